"""Heterogeneous teachers, their rank-aggregation ensemble and its trajectories (HetComp, docs/hetcomp.md).

* :mod:`training.ensemble.trajectory` — per-checkpoint top-N lists of a teacher run (``trajectory.npz``);
* :mod:`training.ensemble.teacher` — :class:`Ensemble`, a scorer and a ranking teacher;
* :mod:`training.ensemble.build` — ``distillrec ensemble build`` (the ensemble run folder);
* :mod:`training.ensemble.distill` — train a student from an ensemble (HetComp, RRD);
* :mod:`training.ensemble.experiment` — the teachers → ensemble → students table.
"""

from training.ensemble.teacher import ENSEMBLE_FILE, Ensemble

__all__ = ["ENSEMBLE_FILE", "Ensemble"]
