"""Distil a student from a finished teacher — a single trained run or an ensemble run folder: the
one function behind ``distillrec distill`` and ``distillrec ensemble distill``."""

from __future__ import annotations

from pathlib import Path

from training.config import RunConfig
from training.data import Dataset, load_dataset
from training.distill.registry import build_methods as _build_methods
from training.distill.teacher import TeacherArtifacts
from training.distill.teacher_protocol import Teacher
from training.errors import ConfigError


def resolve_teacher_path(config: RunConfig, teacher: str | Path | None) -> Path:
    """--teacher wins over ``distill.teacher``; one of them is required."""
    path = teacher or (config.distill.teacher if config.distill else None)
    if path is None:
        raise ConfigError("no teacher: pass --teacher RUN_FOLDER or set distill.teacher in the config.")
    return Path(path)


def build_methods(config: RunConfig) -> list:
    """The KD methods the config lists (validated by the registry: no repeats, dependencies listed)."""
    specs = config.distill.methods if config.distill else []
    if not specs:
        raise ConfigError("distill.methods is empty: list at least one method (e.g. {name: de}); use `distillrec train` for a scratch student.")
    return _build_methods(specs)


def load_teacher(path: str | Path, dataset: Dataset) -> tuple[Teacher, dict]:
    """The teacher in ``path`` and its provenance for result.json: an ensemble run folder (it holds
    ``ensemble.json``) or a single finished run."""
    from training.ensemble.teacher import ENSEMBLE_FILE, Ensemble

    path = Path(path)
    if (path / ENSEMBLE_FILE).is_file():
        ens = Ensemble.load(path, dataset)
        return ens, {"kind": "ensemble", "run": str(path), "parameters": ens.num_parameters()}
    artifacts = TeacherArtifacts(path, dataset)
    return artifacts, artifacts.ref()


def distill_run(
    config: RunConfig,
    out: str | Path,
    teacher: str | Path | None = None,
    resume: bool = False,
    dataset: Dataset | None = None,
    teacher_artifacts: TeacherArtifacts | None = None,
) -> dict:
    """Trains the config's student with its KD methods from ``teacher`` into ``out``.

    Args:
        teacher: a teacher run folder or an ensemble run folder (default: ``distill.teacher``).
        resume: continue from ``out/last.ckpt.npz`` (the KD state, e.g. HetComp's, resumes too).
        teacher_artifacts: an already loaded single teacher (experiments share one across runs).

    Writes the same files as ``distillrec train``; result.json also records the teacher
    (path, model, test metrics, data fingerprint; for an ensemble its folder and size) and the
    method specs. Returns result.json's content.
    """
    from training.runs import train_run

    methods = build_methods(config)
    dataset = dataset or load_dataset(config.data)
    loaded: Teacher
    if teacher_artifacts is not None:
        loaded, ref = teacher_artifacts, teacher_artifacts.ref()
    else:
        loaded, ref = load_teacher(resolve_teacher_path(config, teacher), dataset)
    specs = config.distill.methods if config.distill else []
    extra = {"teacher": ref, "distill": {"methods": [dict(s) for s in specs]}}
    return train_run(config, out, resume=resume, methods=methods, dataset=dataset, extra_result=extra, teacher=loaded)
