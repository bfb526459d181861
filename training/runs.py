"""Run folders: train a config into a folder, and load a finished run back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from training.checkpoint import load_checkpoint
from training.config import RunConfig, load_config
from training.data import Dataset, load_dataset
from training.errors import DistillrecError
from training.models import TrainableRecommender, build_model, model_from_config
from training.run_folder import RunFolder
from training.trainer import Trainer

# Settings that change speed or logging, not results: ignored when comparing a finished run's settings.
_NON_RESULT_KEYS = {("train", "progress"), ("train", "threads")}


def _comparable(config: dict) -> dict:
    tree = json.loads(json.dumps(config, default=str))
    tree.pop("name", None)  # a label, not a setting
    for section, key in _NON_RESULT_KEYS:
        tree.get(section, {}).pop(key, None)
    return tree


def same_settings(run_dir: Path, config: RunConfig) -> bool:
    """Whether the run in ``run_dir`` was trained with ``config`` (its name, progress bars and thread
    count aside). The saved config is validated again, so that a setting added to distillrec after
    the run was trained compares at its default."""
    path = Path(run_dir) / "config.yaml"
    saved = load_config(path)
    return _comparable(saved.model_dump(mode="json")) == _comparable(config.model_dump(mode="json"))


@dataclass
class LoadedRun:
    """A finished run: its config, its data (rebuilt deterministically), its best model, its result."""

    path: Path
    config: RunConfig
    dataset: Dataset
    model: TrainableRecommender
    result: dict


def train_run(
    config: RunConfig,
    out: str | Path,
    resume: bool = False,
    methods=None,
    dataset: Dataset | None = None,
    extra_result: dict | None = None,
    teacher=None,
) -> dict:
    """Trains ``config`` into ``out`` (see :class:`training.trainer.Trainer`); returns result.json's content."""
    dataset = dataset or load_dataset(config.data)
    torch.manual_seed(config.train.seed)  # the model's initialisation depends on the seed only
    model = model_from_config(config.model, dataset.n_users, dataset.n_items, dataset.train)
    return Trainer(config, dataset, model, out, methods=methods, extra_result=extra_result, teacher=teacher).fit(resume=resume)


def load_model_checkpoint(path: str | Path, dataset: Dataset) -> TrainableRecommender:
    """Rebuilds a model from a checkpoint written by the trainer (best, periodic)."""
    tensors, meta = load_checkpoint(path)
    if meta.get("data_fingerprint") != dataset.fingerprint():
        raise DistillrecError(f"{path}: the checkpoint was trained on different data than its run's config describes.")
    model = build_model(**meta["constructor"])
    if hasattr(model, "set_graph"):  # LightGCN, DAE: the training interactions are part of the model
        model.set_graph(dataset.train)
    model.load_state_dict(tensors)
    model.eval()
    return model


def load_run(path: str | Path, dataset: Dataset | None = None) -> LoadedRun:
    """Loads a finished run folder (``config.yaml``, ``best.ckpt.npz``, ``result.json``)."""
    folder = RunFolder(path)
    if folder.missing:
        raise DistillrecError(f"{folder.root}: not a finished run ({folder.missing[0].name} is missing). Train it with `distillrec train --out {folder.root}`.")
    config = load_config(folder.config)
    dataset = dataset or load_dataset(config.data)
    model = load_model_checkpoint(folder.best, dataset)
    return LoadedRun(folder.root, config, dataset, model, json.loads(folder.result.read_text()))
