"""What a KD method may ask of its teacher, as typed protocols.

Two teachers exist: a single trained run (:class:`training.distill.teacher.TeacherArtifacts`, every
capability below but trajectories) and a rank-aggregation ensemble
(:class:`training.ensemble.Ensemble`: :class:`Teacher`, :class:`ScoringTeacher` and
:class:`TrajectoryTeacher`). Every teacher is a :class:`Teacher` (it ranks each user's unobserved
items); a method that needs more asks for it with :func:`require_teacher`, which returns the teacher
typed as that capability or raises a :class:`ConfigError` naming the method and what is missing.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from training.errors import ConfigError


@runtime_checkable
class Teacher(Protocol):
    """user_topn(n) -> int64 [U, n]: each user's n best unobserved items, best first (training items excluded, -1 padding)."""

    def user_topn(self, n: int) -> np.ndarray: ...


@runtime_checkable
class ItemListTeacher(Protocol):
    """item_topn(n) -> int64 [I, n]: each item's n best users, best first (training pairs excluded, -1 padding)."""

    def item_topn(self, n: int) -> np.ndarray: ...


@runtime_checkable
class EmbeddingTeacher(Protocol):
    """embeddings() -> (user [U, d_t], item [I, d_t]) float32: the teacher's representations."""

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]: ...


@runtime_checkable
class ScoringTeacher(Protocol):
    """score_candidates(users [b], items [b, c]) -> float32 [b, c]: the teacher's scores."""

    def score_candidates(self, users: np.ndarray, items: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class TrajectoryTeacher(Protocol):
    """trajectories() -> each member's top-N lists at a few checkpoints, with the ensemble's member weights and temperature."""

    weights: list[float]
    temperature: float

    def trajectories(self) -> list[Any]: ...


T = TypeVar("T")


def require_teacher(method: str, teacher: object | None, capability: type[T]) -> T:
    """``teacher`` typed as ``capability``, or a :class:`ConfigError` saying what ``method`` misses."""
    what = (capability.__doc__ or capability.__name__).strip()
    if teacher is None:
        raise ConfigError(f"KD method '{method}' needs a teacher ({what}); pass --teacher RUN_FOLDER.")
    if not isinstance(teacher, capability):
        raise ConfigError(f"KD method '{method}' needs {what.split('(')[0]} from the teacher, which {type(teacher).__name__} does not provide ({what}).")
    return teacher


__all__ = ["EmbeddingTeacher", "ItemListTeacher", "ScoringTeacher", "Teacher", "TrajectoryTeacher", "require_teacher"]
