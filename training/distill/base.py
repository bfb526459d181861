"""The knowledge-distillation interface the trainer talks to.

A KD method is an ``nn.Module`` (it may own trainable parts such as DE's experts, which the trainer
optimises with the student and discards at export). It declares what it needs from the teacher,
is set up once with a :class:`KDContext`, may refresh samples at the start of each epoch, and returns
named, *unweighted* loss terms for a batch. The trainer adds ``weight × term`` to the base loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from training.data.dataset import Dataset
from training.models.base import Recommender


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
    """What a method may use at set-up: the data, the student, the teacher's cached artifacts."""

    dataset: Dataset
    student: Recommender
    teacher: object | None  # training.distill.teacher.TeacherArtifacts (or an ensemble's)
    rng: np.random.Generator
    max_epochs: int
    extras: dict = field(default_factory=dict)


class KDMethod(nn.Module):
    """Base class of every distillation method (see ``training.distill.registry``)."""

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    default_weight: ClassVar[float] = 1.0

    def __init__(self, weight: float | None = None, params=None):
        super().__init__()
        self.weight = float(self.default_weight if weight is None else weight)
        self.params = params

    def setup(self, ctx: KDContext) -> None:
        """Called once before training (build experts, load lists, sample candidates …)."""

    def on_epoch_start(self, epoch: int, student: Recommender) -> None:
        """Called at the start of every epoch (0-based), before its first batch."""

    def forward(self, batch: Batch, student: Recommender, reps: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Unweighted loss terms (scalars) for this batch. ``reps`` are the student's representations."""
        raise NotImplementedError

    def log_state(self) -> dict:
        """Scalars worth logging per epoch (temperature, phase …)."""
        return {}
