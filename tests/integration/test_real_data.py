"""Real data: the embedded MovieLens-100K and the papers' CiteULike split, plus small smoke runs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from conftest import CITEULIKE_USERS

from training.config import DataConfig, config_from_dict
from training.data import load_dataset, movielens
from training.runs import train_run


def test_ml100k_is_verified_and_split_by_time(ml100k):
    path = movielens.ml100k_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == movielens.SHA256
    s = ml100k.stats()
    assert (s["users"], s["items"], s["interactions"]) == (943, 1682, 100_000)
    assert ml100k.split == "loo-time"
    assert (np.diff(ml100k.test.indptr) == 1).all() and (np.diff(ml100k.valid.indptr) == 1).all()


def test_ml100k_min_rating_keeps_only_high_ratings():
    ds = load_dataset(DataConfig(source="ml-100k", min_rating=4))
    assert ds.stats()["interactions"] == 55_375  # ratings 4 and 5 in MovieLens-100K


def test_corrupt_cache_is_fetched_again(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLREC_CACHE_DIR", str(tmp_path))
    target = tmp_path / "ml-100k" / movielens.FILENAME
    target.parent.mkdir(parents=True)
    target.write_text("truncated")
    assert movielens.ml100k_path(progress=False) == target
    assert hashlib.sha256(target.read_bytes()).hexdigest() == movielens.SHA256
    assert not list(target.parent.glob("tmp*"))  # nothing half-written is left behind


def test_citeulike_loo_matches_the_papers(citeulike_loo):
    s = citeulike_loo.stats()
    assert (s["users"], s["items"], s["train_interactions"], s["valid_interactions"], s["test_interactions"]) == (5219, 25181, 115_142, 5219, 5219)


def test_citeulike_users_dat_hetcomp_protocol():
    ds = load_dataset(DataConfig(source="citeulike", path=CITEULIKE_USERS, split="ratio", min_user_interactions=5, drop_cold_targets=True))
    assert ds.n_users == 5219 and ds.split == "ratio"
    assert ds.train.nnz > 0.55 * (ds.train.nnz + ds.valid.nnz + ds.test.nnz)


@pytest.mark.slow
def test_citeulike_sampled_protocol_smoke(citeulike_loo, tmp_path):
    cfg = config_from_dict(
        {
            "model": {"family": "mf", "dim": 20},
            "train": {"epochs": 2, "progress": False},
            "eval": {"protocol": "sampled", "ks": [10], "select": "hr@10"},
        }
    )
    result = train_run(cfg, tmp_path, dataset=citeulike_loo)
    assert result["test"]["protocol"] == "sampled-499"
    assert result["test"]["users"] == 5219
    # two epochs already beat random ranking of 500 items (NDCG@10 ≈ 0.01) by far
    assert 0.05 < result["test"]["metrics"]["ndcg@10"] < 0.5
