"""Distil a student from a finished teacher run: the function behind ``distillrec distill``."""

from __future__ import annotations

from pathlib import Path

from training.config import RunConfig
from training.data import Dataset, load_dataset
from training.distill.registry import build_method
from training.distill.teacher import TeacherArtifacts
from training.errors import ConfigError


def resolve_teacher_path(config: RunConfig, teacher: str | Path | None) -> Path:
    """--teacher wins over ``distill.teacher``; one of them is required."""
    path = teacher or (config.distill.teacher if config.distill else None)
    if path is None:
        raise ConfigError("no teacher: pass --teacher RUN_FOLDER or set distill.teacher in the config.")
    return Path(path)


def build_methods(config: RunConfig) -> list:
    """The KD methods the config lists (validated by the registry)."""
    specs = config.distill.methods if config.distill else []
    if not specs:
        raise ConfigError("distill.methods is empty: list at least one method (e.g. {name: de}); use `distillrec train` for a scratch student.")
    methods = [build_method(spec) for spec in specs]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"distill.methods lists a method twice: {names}")
    return methods


def distill_run(
    config: RunConfig,
    out: str | Path,
    teacher: str | Path | None = None,
    resume: bool = False,
    dataset: Dataset | None = None,
    teacher_artifacts: TeacherArtifacts | None = None,
) -> dict:
    """Trains the config's student with its KD methods from ``teacher`` into ``out``.

    Writes the same files as ``distillrec train``; result.json also records the teacher
    (path, model, test metrics, data fingerprint) and the method specs. Returns result.json's content.
    """
    from training.runs import train_run

    methods = build_methods(config)
    dataset = dataset or load_dataset(config.data)
    artifacts = teacher_artifacts or TeacherArtifacts(resolve_teacher_path(config, teacher), dataset)
    extra = {"teacher": artifacts.ref(), "distill": {"methods": [dict(s) for s in config.distill.methods]}}
    return train_run(config, out, resume=resume, methods=methods, dataset=dataset, extra_result=extra, teacher=artifacts)
