"""Ranking metrics as pure functions on arrays.

Every protocol reduces to a boolean ``hits`` matrix [queries, K_max] — ``hits[q, p]`` is True when
the item at (0-based) position ``p`` of query ``q``'s ranked list is a target — plus the number of
targets per query. The metrics follow the papers:

* ``hr@K``: 1 if any target is in the top K;
* ``recall@K``: targets in the top K / number of targets (equals HR@K with one target);
* ``ndcg@K``: Σ_p hits / log2(p + 2), divided by the ideal DCG of min(K, #targets) targets;
* ``mrr@K``: 1 / (position of the first hit + 1), 0 when no hit is in the top K.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.sampling import excluded_keys

METRICS = ("hr", "recall", "ndcg", "mrr")


def metrics_from_hits(hits: np.ndarray, n_targets: np.ndarray, ks: list[int]) -> dict[str, float]:
    """Mean HR, Recall, NDCG and MRR at each K over queries with at least one target.

    Args:
        hits: bool [q, K_max] with K_max >= max(ks).
        n_targets: int [q], the number of relevant items of each query (>= 1).
        ks: cut-offs.
    """
    hits = np.asarray(hits, dtype=bool)
    n_targets = np.asarray(n_targets, dtype=np.int64)
    if hits.shape[0] == 0:
        return {f"{m}@{k}": 0.0 for k in ks for m in METRICS}
    if hits.shape[1] < max(ks):
        raise ValueError(f"hits has {hits.shape[1]} columns, fewer than K={max(ks)}")
    if (n_targets < 1).any():
        raise ValueError("every query needs at least one target")
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    out: dict[str, float] = {}
    for k in ks:
        h = hits[:, :k]
        n_hit = h.sum(axis=1)
        dcg = (h * discounts[:k]).sum(axis=1)
        ideal = np.cumsum(discounts[:k])[np.minimum(n_targets, k) - 1]
        first = np.where(h.any(axis=1), h.argmax(axis=1) + 1, np.inf)
        out[f"hr@{k}"] = float((n_hit > 0).mean())
        out[f"recall@{k}"] = float((n_hit / n_targets).mean())
        out[f"ndcg@{k}"] = float((dcg / ideal).mean())
        out[f"mrr@{k}"] = float((1.0 / first).mean())
    return out


def hits_from_topk(topk: np.ndarray, users: np.ndarray, targets: sp.csr_matrix) -> np.ndarray:
    """bool [q, K]: whether item ``topk[q, p]`` is a target of user ``users[q]`` in the CSR ``targets``."""
    topk = np.asarray(topk, dtype=np.int64)
    keys = excluded_keys(targets)
    query = np.asarray(users, dtype=np.int64)[:, None] * targets.shape[1] + topk
    if len(keys) == 0:
        return np.zeros(topk.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return keys[pos] == query


def hits_from_sampled_ranks(ranks: np.ndarray, k_max: int) -> np.ndarray:
    """bool [q, k_max] with a single True at position rank-1 when rank <= k_max (1-based ranks)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    return np.arange(1, k_max + 1)[None, :] == ranks[:, None]


def pessimistic_rank(target_score: np.ndarray, negative_scores: np.ndarray) -> np.ndarray:
    """1 + #{negatives scoring >= the target}: ties count against the model (docs/methods.md#pitfalls, item 14).

    Args:
        target_score: float [q].
        negative_scores: float [q, n].
    """
    return 1 + (np.asarray(negative_scores) >= np.asarray(target_score)[:, None]).sum(axis=1)


def coverage(topk: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue that appears in at least one user's top K."""
    seen = np.zeros(n_items, dtype=bool)
    seen[np.asarray(topk)[:, :k]] = True
    return float(seen.sum()) / n_items
