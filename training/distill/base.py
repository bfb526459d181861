"""The knowledge-distillation interface the trainer talks to.

A KD method is an ``nn.Module`` (it may own trainable parts such as DE's experts, which the trainer
optimises with the student and discards at export). It declares

* ``Params``: a strict pydantic model of its knobs; the base class validates nothing itself but
  always holds a typed ``self.params`` (the defaults when the config gives none);
* ``requires``: the other KD methods it builds on (IR regularises RRD's samples), which must be
  listed in the same run; it reaches them with :meth:`KDContext.method`, whatever the list order;
* what it needs from the teacher, by asking for a capability of
  :mod:`training.distill.teacher_protocol` in :meth:`setup`.

It is set up once with a :class:`KDContext`, may refresh samples at the start of each epoch, and
returns named, *unweighted* loss terms for a batch. The trainer adds ``weight × term`` to the base loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar, cast

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from training.data.dataset import Dataset
from training.distill.teacher_protocol import Teacher
from training.errors import ConfigError
from training.models.base import TrainableRecommender

P = TypeVar("P", bound=BaseModel | None)
M = TypeVar("M", bound="KDMethod")


@dataclass
class Batch:
    """One training batch: ``users[b]``, positive ``pos[b]`` and negatives ``neg[b, n]`` (indices)."""

    users: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor
    epoch: int
    index: int


@dataclass
class KDContext:
    """What a method may use at set-up: the data, the student, the teacher and the run's other methods."""

    dataset: Dataset
    student: TrainableRecommender
    teacher: Teacher | None  # a single teacher run (TeacherArtifacts) or an ensemble
    rng: np.random.Generator
    max_epochs: int
    methods: Sequence[KDMethod] = field(default_factory=tuple)  # every method of the run, set up or not

    def method(self, user: str, cls: type[M]) -> M:
        """The run's method of class ``cls`` that ``user`` builds on (see :attr:`KDMethod.requires`)."""
        for m in self.methods:
            if isinstance(m, cls):
                return m
        raise ConfigError(f"{user} builds on {cls.name}: list a '{cls.name}' method in distill.methods too.")


class KDMethod(nn.Module, Generic[P]):
    """Base class of every distillation method (see ``training.distill.registry``)."""

    name: ClassVar[str] = ""
    default_weight: ClassVar[float] = 1.0
    Params: ClassVar[type[BaseModel] | None] = None
    requires: ClassVar[tuple[type[KDMethod], ...]] = ()

    def __init__(self, weight: float | None = None, params: P | None = None):
        super().__init__()
        self.weight = float(self.default_weight if weight is None else weight)
        if params is None and self.Params is not None:
            params = cast(P, self.Params())
        self.params: P = cast(P, params)

    def setup(self, ctx: KDContext) -> None:
        """Called once before training (build experts, load lists, sample candidates …)."""

    def on_epoch_start(self, epoch: int, student: TrainableRecommender) -> None:
        """Called at the start of every epoch (0-based), before its first batch."""

    def forward(self, batch: Batch, student: TrainableRecommender, reps: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Unweighted loss terms (scalars) for this batch. ``reps`` are the student's representations."""
        raise NotImplementedError

    def log_state(self) -> dict:
        """Scalars worth logging per epoch (temperature, phase …)."""
        return {}

    def table_gradients(self) -> str:
        """Why this method takes gradients at the student's embedding tables itself
        (``torch.autograd.grad``), which the per-row Adam step's row gradients do not give
        (``train.adam_rows: batch`` is then refused); "" when it does not."""
        return ""
