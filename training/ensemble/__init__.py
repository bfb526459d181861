"""Heterogeneous teachers, their rank-aggregation ensemble and its trajectories (HetComp, docs/hetcomp.md).

* :mod:`training.ensemble.trajectory` — per-checkpoint top-N lists of a teacher run (``trajectory.npz``);
* :mod:`training.ensemble.teacher` — :class:`Ensemble`, a scorer and a ranking teacher;
* :mod:`training.ensemble.build` — ``distillrec ensemble build`` (the ensemble run folder; students are
  distilled from it by :func:`training.distill.train_student.distill_run`, like from a single teacher, and
  studied by :mod:`training.experiments`, whose teacher may be an ensemble).
"""

from training.ensemble.teacher import ENSEMBLE_FILE, Ensemble

__all__ = ["ENSEMBLE_FILE", "Ensemble"]
