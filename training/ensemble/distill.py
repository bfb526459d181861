"""Train a student from an ensemble teacher (HetComp, or any ranking KD method such as RRD).

The student's run config names the ensemble run folder in ``distill.teacher`` and lists its KD
methods in ``distill.methods`` (``{name: hetcomp, weight: 0.01, …}``); the ensemble is loaded as
the teacher object every method receives (:class:`training.ensemble.Ensemble`: ``user_topn`` for
RRD, ``trajectories`` for HetComp). A config without a ``distill`` section trains a scratch student.
"""

from __future__ import annotations

from pathlib import Path

from training.config import RunConfig
from training.data import load_dataset
from training.errors import ConfigError
from training.ensemble.teacher import Ensemble


def distill_from_ensemble(config: RunConfig, out: str | Path, ensemble: str | Path | None = None, resume: bool = False) -> dict:
    """Trains ``config``'s student into ``out``; returns its result.json content.

    Args:
        config: the student's run config (``distill.methods`` empty or absent: scratch training).
        out: the run folder.
        ensemble: the ensemble run folder (default: ``config.distill.teacher``).
        resume: continue from ``out/last.ckpt.npz`` (the KD state, e.g. HetComp's DKC, resumes too).
    """
    from training.distill.registry import build_method  # loads every registered method module (hetcomp too)
    from training.runs import train_run

    dataset = load_dataset(config.data)
    specs = config.distill.methods if config.distill else []
    if not specs:
        return train_run(config, out, resume=resume, dataset=dataset)
    folder = ensemble or (config.distill.teacher if config.distill else None)
    if folder is None:
        raise ConfigError("a distilled student needs its ensemble: set distill.teacher (an ensemble run folder) or pass --ensemble.")
    ens = Ensemble.load(folder, dataset)
    methods = [build_method(spec) for spec in specs]
    extra = {"teacher": {"kind": "ensemble", "run": str(folder), "parameters": ens.num_parameters()}}
    return train_run(config, out, resume=resume, methods=methods, dataset=dataset, teacher=ens, extra_result=extra)
