"""Shared fixtures: a tiny synthetic dataset with a known structure, and the real datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.config import DataConfig
from training.data import load_dataset
from training.data.interactions import Interactions
from training.data.splits import leave_one_out

REPO = Path(__file__).resolve().parents[1]
CITEULIKE_LOO = REPO / "data" / "citeulike" / "loo"
CITEULIKE_USERS = REPO / "data" / "citeulike" / "users.dat"


def mf_with(U: np.ndarray, I: np.ndarray):
    """A matrix factorisation model whose user and item tables hold the float32 arrays U and I."""
    import torch

    from training.models.mf import MF

    model = MF(len(U), len(I), U.shape[1])
    with torch.no_grad():
        model.user_emb.weight.copy_(torch.from_numpy(U))
        model.item_emb.weight.copy_(torch.from_numpy(I))
    return model


def clustered_interactions(n_users: int = 60, n_items: int = 48, n_clusters: int = 4, per_user: int = 8, seed: int = 0) -> Interactions:
    """Users of cluster c interact only with items of cluster c (block-diagonal), with timestamps.

    A model that learns anything must rank a user's own-cluster items first; this is the
    "checkerboard" structure the tests use as a known answer.
    """
    rng = np.random.default_rng(seed)
    items_per = n_items // n_clusters
    users, items, times = [], [], []
    for u in range(n_users):
        c = u % n_clusters
        chosen = rng.choice(np.arange(c * items_per, (c + 1) * items_per), size=per_user, replace=False)
        users += [f"u{u}"] * per_user
        items += [f"i{i}" for i in chosen]
        times += list(range(per_user))
    return Interactions(np.array(users), np.array(items), None, np.array(times, dtype=float), "<synthetic>")


@pytest.fixture(scope="session")
def tiny_dataset():
    """60 users × 48 items in 4 clusters, leave-one-out by time."""
    return leave_one_out(clustered_interactions(), "tiny", seed=0)


@pytest.fixture(scope="session")
def ml100k():
    """MovieLens-100K, leave-one-out by time (fetched once into the user cache dir)."""
    return load_dataset(DataConfig(source="ml-100k"))


@pytest.fixture(scope="session")
def citeulike_loo():
    """The papers' CiteULike leave-one-out split (vendored under data/citeulike/loo)."""
    return load_dataset(DataConfig(source="presplit", path=CITEULIKE_LOO, name="citeulike-loo"))


def write_block_log(path, n_users: int, n_blocks: int, per_user: int, ratings: bool = False):
    """A small interaction log CSV (user,item[,rating],ts): user u picks ``per_user`` of the 10 items of
    taste block u % n_blocks, in time order. Returns ``path``."""
    rng = np.random.default_rng(0)
    rows = ["user,item,rating,ts" if ratings else "user,item,ts"]
    for u in range(n_users):
        block = u % n_blocks
        for t, i in enumerate(rng.choice(np.arange(block * 10, block * 10 + 10), per_user, replace=False)):
            rows.append(f"user{u},item{i},{1 + t % 5},{t}" if ratings else f"user{u},item{i},{t}")
    path.write_text("\n".join(rows) + "\n")
    return path
