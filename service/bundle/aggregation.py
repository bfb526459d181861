"""Rank aggregation of several recommenders' top-N lists (the ensemble teacher). Pure numpy.

Shared by training (``training.ensemble`` builds and evaluates the ensemble teacher; HetComp builds
its targets with it) and serving (the ``ensemble`` bundle role merges its members' lists), so the
two sides cannot disagree. Each member contributes, for the item at 0-based position ``p`` of its
list, the importance ``w · exp(−p / T)`` (the rank transform of ConCF/HetComp, docs/methods.md#rank-aggregation);
items absent from a member's list get nothing from it. Items are ordered by summed importance,
ties by smaller item index.
"""

from __future__ import annotations

import numpy as np


def rank_importance(n: int, temperature: float) -> np.ndarray:
    """float64 [n]: exp(−p / T) for positions p = 0 … n−1."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    return np.exp(-np.arange(n, dtype=np.float64) / temperature)


def aggregate_lists(
    lists: list[np.ndarray],
    k: int,
    weights: list[float] | None = None,
    temperature: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Merges per-member ranked lists into one ranked list per row.

    Args:
        lists: one int array [b, n_m] per member, best item first; ``-1`` marks padding.
        k: length of the merged lists.
        weights: one weight per member (default 1 each).
        temperature: T of the rank transform.

    Returns:
        (items int64 [b, k], scores float64 [b, k]); rows with fewer than k distinct items are
        padded with item -1 and score -inf.
    """
    if not lists:
        raise ValueError("at least one member list is needed")
    b = lists[0].shape[0]
    weights = [1.0] * len(lists) if weights is None else list(weights)
    if len(weights) != len(lists):
        raise ValueError("one weight per member list is needed")
    rows, items, gains = [], [], []
    for w, lst in zip(weights, lists):
        lst = np.asarray(lst, dtype=np.int64)
        if lst.shape[0] != b:
            raise ValueError("all member lists need the same number of rows")
        imp = w * rank_importance(lst.shape[1], temperature)
        valid = lst >= 0
        r = np.broadcast_to(np.arange(b)[:, None], lst.shape)
        rows.append(r[valid])
        items.append(lst[valid])
        gains.append(np.broadcast_to(imp, lst.shape)[valid])
    rows_a, items_a, gains_a = np.concatenate(rows), np.concatenate(items), np.concatenate(gains)
    span = int(items_a.max()) + 1 if len(items_a) else 1
    keys, inverse = np.unique(rows_a * span + items_a, return_inverse=True)
    totals = np.bincount(inverse, weights=gains_a)
    krow, kitem = keys // span, keys % span
    order = np.lexsort((kitem, -totals, krow))  # by row, then score desc, then item asc
    krow, kitem, totals = krow[order], kitem[order], totals[order]
    starts = np.searchsorted(krow, np.arange(b))
    pos = np.arange(len(krow)) - starts[krow]
    keep = pos < k
    out_items = np.full((b, k), -1, dtype=np.int64)
    out_scores = np.full((b, k), -np.inf, dtype=np.float64)
    out_items[krow[keep], pos[keep]] = kitem[keep]
    out_scores[krow[keep], pos[keep]] = totals[keep]
    return out_items, out_scores
