"""Helpers for the KD tests: a tiny trained teacher and small method parameters (not a test module)."""

from __future__ import annotations

from pathlib import Path

from training.config import config_from_dict
from training.distill.teacher import TeacherArtifacts
from training.runs import train_run

#: Small parameters per method so that every method runs on the 60 × 48 tiny dataset in milliseconds.
SMALL_PARAMS: dict[str, list[dict]] = {
    "de": [{"name": "de", "experts": 4}],
    "phr": [{"name": "phr", "hidden": 16}],
    "fitnet": [{"name": "fitnet"}],
    "ftd": [{"name": "ftd"}],
    "htd": [{"name": "htd", "groups": 3}],
    "rrd": [{"name": "rrd", "interesting": 4, "uninteresting": 4, "topn": 10}],
    "ir": [{"name": "rrd", "interesting": 4, "uninteresting": 4, "topn": 10}, {"name": "ir", "interesting": 3, "uninteresting": 3, "topn": 10}],
    "rd": [{"name": "rd", "topk": 5, "dynamic_samples": 10, "dynamic_start_epoch": 0}],
    "cd": [{"name": "cd", "candidates": 10, "samples": 2}],
    "concf": [{"name": "concf", "period": 1, "queue": 1, "top_n": 6}],
}


def teacher_config(dim: int = 16, epochs: int = 40):
    return config_from_dict(
        {
            "name": "tiny-teacher",
            "model": {"family": "mf", "dim": dim, "init_std": 0.1},
            "train": {"epochs": epochs, "batch_size": 64, "lr": 0.05, "weight_decay": 0.0, "progress": False},
            "eval": {"ks": [5, 10], "select": "ndcg@10", "patience": 100},
        }
    )


def student_tree(family: str = "mf", dim: int = 4, **train) -> dict:
    return {
        "name": "tiny-student",
        "model": {"family": family, "dim": dim, "init_std": 0.1, "layers": 1},
        "train": {"epochs": 10, "batch_size": 64, "lr": 0.01, "weight_decay": 0.0, "progress": False, **train},
        "eval": {"ks": [5, 10], "select": "ndcg@10", "patience": 100},
    }


def train_tiny_teacher(dataset, folder: Path) -> TeacherArtifacts:
    """A BPR-MF dim-16 teacher on ``dataset`` (about a second), as teacher artifacts."""
    if not (folder / "result.json").exists():
        train_run(teacher_config(), folder, dataset=dataset)
    return TeacherArtifacts(folder, dataset)
