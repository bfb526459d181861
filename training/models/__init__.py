"""Model registry: ``build_model(family, n_users, n_items, dim, ...)``."""

from __future__ import annotations

from training.config import ModelConfig
from training.models.base import TrainableRecommender
from training.models.dae import DAE
from training.models.lightgcn import LightGCN
from training.models.mf import MF
from training.models.neumf import NeuMF

MODELS: dict[str, type[TrainableRecommender]] = {"mf": MF, "lightgcn": LightGCN, "neumf": NeuMF, "dae": DAE}

__all__ = ["MODELS", "TrainableRecommender", "build_model", "model_from_config"]


def build_model(family: str, n_users: int, n_items: int, dim: int, **kwargs) -> TrainableRecommender:
    """Builds a model from its constructor arguments (as stored in checkpoints and manifests)."""
    if family not in MODELS:
        raise KeyError(f"unknown model family '{family}'; known: {sorted(MODELS)}")
    return MODELS[family](n_users, n_items, dim, **kwargs)


def model_from_config(cfg: ModelConfig, n_users: int, n_items: int, train=None) -> TrainableRecommender:
    """Builds the model a run config describes; LightGCN and DAE get the training interactions ``train`` (CSR)."""
    model: TrainableRecommender
    if cfg.family == "mf":
        model = MF(n_users, n_items, cfg.dim, init_std=cfg.init_std, tower=cfg.tower, dropout=cfg.dropout)
    elif cfg.family == "dae":
        model = DAE(n_users, n_items, cfg.dim, init_std=cfg.init_std, dropout=cfg.dropout)
    elif cfg.family == "lightgcn":
        model = LightGCN(n_users, n_items, cfg.dim, layers=cfg.layers, init_std=cfg.init_std)
    else:
        model = NeuMF(n_users, n_items, cfg.dim, layers=cfg.layers, init_std=cfg.init_std, dropout=cfg.dropout)
    if isinstance(model, (LightGCN, DAE)):
        if train is None:
            raise ValueError(f"{cfg.family} needs the training interactions (its graph / input rows)")
        model.set_graph(train)
    return model
