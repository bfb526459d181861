"""Helpers for the KD tests: a tiny trained teacher and small method parameters (not a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from training.config import config_from_dict
from training.distill.base import Batch, KDContext
from training.distill.registry import build_methods
from training.distill.teacher import TeacherArtifacts
from training.models import model_from_config
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


def tiny_batch(dataset, rng, b=48):
    users, items = dataset.train_pairs()
    pick = rng.choice(len(users), size=b, replace=False)
    neg = rng.integers(0, dataset.n_items, size=(b, 2))
    return Batch(torch.as_tensor(users[pick]), torch.as_tensor(items[pick]), torch.as_tensor(neg), 0, 0)


def check_method_conformance(name: str, family: str, tiny_dataset, teacher) -> None:
    """One KD method on one student family: set-up, refresh, finite named terms, gradients to the student
    and to the method's own trainable parts, no teacher tables in its state."""
    torch.manual_seed(0)
    cfg = config_from_dict({"model": {"family": family, "dim": 4, "layers": 1, "init_std": 0.1}})
    student = model_from_config(cfg.model, tiny_dataset.n_users, tiny_dataset.n_items, tiny_dataset.train)
    methods = build_methods(SMALL_PARAMS[name])
    ctx = KDContext(tiny_dataset, student, teacher, np.random.default_rng(0), max_epochs=50, methods=methods)
    for m in methods:
        m.setup(ctx)
    for m in methods:
        m.on_epoch_start(3, student)
    batch = tiny_batch(tiny_dataset, np.random.default_rng(1))
    reps = student.representations()
    total = torch.zeros(())
    for m in methods:
        terms = m(batch, student, reps)
        assert isinstance(terms, dict) and terms, name
        for key, value in terms.items():
            assert value.shape == () and torch.isfinite(value), (name, key)
            total = total + m.weight * value
        assert isinstance(m.log_state(), dict)
    total.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0, f"{name}: no gradient reaches the {family} student"
    own = [p for m in methods for p in m.parameters()]
    if own:
        assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in own), f"{name}: its trainable parts get no gradient"
    for m in methods:  # teacher tables are not persisted in checkpoints
        assert not any(k.startswith("t_") for k in m.state_dict())
