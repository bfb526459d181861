"""Evaluation protocols with a hand-made scorer whose rankings are known."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.dataset import Dataset
from training.evaluation import evaluate_full, evaluate_sampled, top_k_excluding
from training.evaluation.protocols import sampled_candidates


class FixedScorer:
    """score(u, i) = table[u, i]."""

    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float32)

    def score_all(self, users):
        return self.table[users]

    def score_candidates(self, users, items):
        return self.table[np.asarray(users)[:, None], items]


def _dataset():
    # 2 users × 6 items. user 0: train {0}, valid {1}, test {2}; user 1: train {3}, valid {4}, test {5}
    return Dataset.from_indices(
        "hand",
        np.array(["a", "b"]),
        np.array([f"i{k}" for k in range(6)]),
        (np.array([0, 1]), np.array([0, 3])),
        (np.array([0, 1]), np.array([1, 4])),
        (np.array([0, 1]), np.array([2, 5])),
        split="presplit",
    )


def test_full_ranking_excludes_train_and_the_other_part():
    ds = _dataset()
    # user 0 prefers 0 (train) > 1 (valid) > 2 (test): with both excluded the test item ranks first.
    # user 1 prefers 3 (train) > 0 > 5 (test) > 4 (valid): the test item ranks second.
    table = [[9, 8, 7, 1, 2, 3], [5, 1, 0, 9, 2, 3]]
    res = evaluate_full(FixedScorer(table), ds, "test", [1, 2])
    assert res.protocol == "full" and res.users == 2 and res.excluded == "train+valid"
    assert res.metrics["hr@1"] == pytest.approx(0.5)
    assert res.metrics["hr@2"] == pytest.approx(1.0)
    assert res.metrics["mrr@2"] == pytest.approx((1 + 0.5) / 2)
    valid = evaluate_full(FixedScorer(table), ds, "valid", [1])
    assert valid.metrics["hr@1"] == pytest.approx(0.5)  # user 0's valid item 1 is now first


def test_top_k_excluding_orders_best_first():
    ds = _dataset()
    top = top_k_excluding(FixedScorer([[9, 8, 7, 1, 2, 3], [5, 1, 0, 9, 2, 3]]), np.array([0, 1]), ds.train, 3)
    assert top.tolist() == [[1, 2, 5], [0, 5, 4]]


def test_sampled_protocol_ties_and_candidates():
    ds = _dataset()
    negs = sampled_candidates(ds, 2, seed=0)
    observed = (ds.train + ds.valid + ds.test).toarray() > 0
    assert negs.shape == (2, 2)
    assert not observed[np.arange(2)[:, None], negs].any()
    assert (sampled_candidates(ds, 2, seed=0) == negs).all()
    flat = np.zeros((2, 6))  # every score tied: pessimistic rank is last (3 of 3)
    res = evaluate_sampled(FixedScorer(flat), ds, "test", [1, 2, 3], n=2)
    assert res.protocol == "sampled-2"
    assert res.metrics["hr@2"] == 0.0 and res.metrics["hr@3"] == 1.0
