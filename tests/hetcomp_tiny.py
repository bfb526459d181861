"""Tiny heterogeneous teachers with trajectories and their ensemble (shared by the HetComp/ensemble tests).

The data is the block-structured synthetic log of ``conftest.clustered_interactions`` written to a
CSV, so every step loads it from a config exactly as the real experiments do (60/20/20 ratio
split, cold targets dropped, full ranking).
"""

from __future__ import annotations

from pathlib import Path

from conftest import clustered_interactions

from training.config import config_from_dict
from training.runs import train_run

TEACHERS = {"mf": {"dim": 16, "init_std": 0.1}, "lightgcn": {"dim": 16, "layers": 2, "init_std": 0.1}}


def write_csv(folder: Path) -> Path:
    data = clustered_interactions(n_users=60, n_items=48, per_user=10)
    path = folder / "tiny.csv"
    rows = ["user,item,timestamp"] + [f"{u},{i},{int(t)}" for u, i, t in zip(data.user, data.item, data.timestamp)]
    path.write_text("\n".join(rows) + "\n")
    return path


def data_section(csv: Path) -> dict:
    return {
        "source": "file",
        "path": str(csv),
        "name": "tiny",
        "split": "ratio",
        "valid_ratio": 0.2,
        "test_ratio": 0.2,
        "drop_cold_targets": True,
        "min_user_interactions": 5,
        "seed": 0,
    }


def run_tree(csv: Path, family: str, model: dict, **train) -> dict:
    return {
        "name": f"tiny-{family}",
        "data": data_section(csv),
        "model": {"family": family, **model},
        "train": {"epochs": 24, "batch_size": 128, "lr": 0.01, "weight_decay": 0.0, "progress": False, "threads": 1, **train},
        "eval": {"ks": [5, 10], "select": "ndcg@5", "every": 1, "patience": 100},
    }


def train_teachers(folder: Path) -> tuple[Path, list[Path]]:
    """Trains the tiny teachers (a checkpoint every epoch); returns (csv, run folders)."""
    csv = write_csv(folder)
    runs = []
    for family, model in TEACHERS.items():
        out = folder / f"teacher-{family}"
        train_run(config_from_dict(run_tree(csv, family, model, checkpoint_every=1)), out)
        runs.append(out)
    return csv, runs


def ensemble_tree(runs: list[Path], **extra) -> dict:
    return {
        "name": "tiny-ensemble",
        "members": [{"run": str(r), "weight": 1.0} for r in runs],
        "temperature": 10.0,
        "list_length": 20,
        "eval": {"protocol": "full", "ks": [5, 10]},
        "trajectory": {"fractions": [0.2, 0.5], "top_n": 20},
        **extra,
    }
