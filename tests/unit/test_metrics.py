"""Metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from training.evaluation.ranking_metrics import (
    coverage,
    hits_from_sampled_ranks,
    hits_from_topk,
    metrics_from_hits,
    pessimistic_rank,
)


def test_single_target_metrics_by_hand():
    hits = np.array([[False, True, False], [True, False, False], [False, False, False]])
    m = metrics_from_hits(hits, np.array([1, 1, 1]), [1, 3])
    assert m["hr@1"] == pytest.approx(1 / 3)
    assert m["hr@3"] == pytest.approx(2 / 3)
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["ndcg@1"] == pytest.approx(1 / 3)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1) / 3)
    assert m["mrr@3"] == pytest.approx((0.5 + 1) / 3)
    assert m["mrr@1"] == pytest.approx(1 / 3)


def test_multi_target_recall_and_ideal_dcg():
    hits = np.array([[True, False, True]])
    three = metrics_from_hits(hits, np.array([3]), [3])
    assert three["recall@3"] == pytest.approx(2 / 3)
    assert three["ndcg@3"] == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3) + 0.5))
    two = metrics_from_hits(hits, np.array([2]), [3])
    assert two["recall@3"] == pytest.approx(1.0)
    assert two["ndcg@3"] == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert two["mrr@3"] == pytest.approx(1.0)


def test_k_larger_than_hits_is_an_error():
    with pytest.raises(ValueError):
        metrics_from_hits(np.zeros((2, 3), bool), np.ones(2, int), [5])


def test_pessimistic_rank_counts_ties_against_the_model():
    ranks = pessimistic_rank(np.array([0.5, 1.0]), np.array([[0.5, 0.2, 0.7], [0.1, 0.2, 0.3]]))
    assert ranks.tolist() == [3, 1]


def test_sampled_ranks_to_hits():
    hits = hits_from_sampled_ranks(np.array([1, 3, 7]), 5)
    assert hits.tolist() == [
        [True, False, False, False, False],
        [False, False, True, False, False],
        [False] * 5,
    ]


def test_hits_from_topk_uses_each_users_targets():
    targets = sp.csr_matrix(np.array([[0, 1, 0, 1], [1, 0, 0, 0]], dtype=np.float32))
    hits = hits_from_topk(np.array([[3, 0, 1], [1, 2, 0]]), np.array([0, 1]), targets)
    assert hits.tolist() == [[True, False, True], [False, False, True]]


def test_coverage():
    assert coverage(np.array([[0, 1], [0, 2]]), 10, 1) == pytest.approx(0.1)
    assert coverage(np.array([[0, 1], [0, 2]]), 10, 2) == pytest.approx(0.3)
