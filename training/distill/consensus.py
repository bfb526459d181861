"""ConCF's consensus: per-head top-N snapshots, their queue, and the consensus list built from them.

Only top-N lists are kept (int64 [users, N] per head and snapshot, training items excluded); an item
outside a snapshot's list has rank N there ("never top"). Scores are computed in chunks of users, so
no users × items matrix outlives a chunk. With r_h(u, i) the item's rank in head h's latest snapshot
and σ_h(u, i) the standard deviation of its rank over the head's queue (its consistency),

    c(u, i) = Σ_h [ exp(−r_h(u, i) / 10) + exp(−σ_h(u, i) / 100) ] · 1[r_h(u, i) < N]

and the consensus list of u is its N items of highest c, best first (the union of the heads' latest
lists holds every item with c > 0).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

from training.evaluation.ranking_metrics import hits_from_topk, metrics_from_hits

#: Elements (floats) one chunk of a users × items computation may hold.
CHUNK_BUDGET = 1 << 22


def user_chunks(n_users: int, n_cols: int, budget: int = CHUNK_BUDGET):
    """Consecutive user index ranges whose rows × ``n_cols`` fit ``budget``."""
    step = max(1, budget // max(1, n_cols))
    for start in range(0, n_users, step):
        yield np.arange(start, min(n_users, start + step))


def top_n_excluding(score_rows: Callable[[np.ndarray], torch.Tensor], train: sp.csr_matrix, n: int) -> np.ndarray:
    """int64 [users, n]: each user's n best items by ``score_rows(users) -> [len, items]`` with the
    user's training items excluded, best first; −1 pads users with fewer than n other items."""
    n_users, n_items = train.shape
    out = np.full((n_users, n), -1, dtype=np.int64)
    k = min(n, n_items)
    for users in user_chunks(n_users, n_items):
        scores = score_rows(users).detach().clone()
        sub = train[users]
        scores[np.repeat(np.arange(len(users)), np.diff(sub.indptr)), sub.indices] = -torch.inf
        val, idx = torch.topk(scores, k, dim=1)
        out[users, :k] = np.where(torch.isfinite(val).numpy(), idx.numpy(), -1)
    return out


def ranks_in(lists: np.ndarray, candidates: np.ndarray, n_items: int) -> np.ndarray:
    """int64 [rows, m]: the position of ``candidates[r, j]`` in ``lists[r]`` (N = the list width when
    absent or when the candidate is −1). Uses one dense [rows, n_items] table per call (a chunk)."""
    rows, width = lists.shape
    table = np.full((rows, n_items + 1), width, dtype=np.int64)  # column n_items absorbs −1 entries
    r = np.repeat(np.arange(rows), width)
    table[r, np.where(lists >= 0, lists, n_items).ravel()] = np.tile(np.arange(width), rows)
    table[:, n_items] = width
    return np.take_along_axis(table, np.where(candidates >= 0, candidates, n_items), axis=1)


def consensus_scores(ranks: np.ndarray, n_top: int, rank_temp: float = 10.0, consistency_temp: float = 100.0) -> np.ndarray:
    """c [rows, m] from ranks [heads, snapshots, rows, m] (latest snapshot last):
    Σ_h [exp(−r_h / rank_temp) + exp(−σ_h / consistency_temp)] · 1[r_h < n_top], with r_h the latest
    rank and σ_h the (population) standard deviation of the rank over the snapshots."""
    ranks = np.asarray(ranks, dtype=np.float64)
    current = ranks[:, -1]
    sigma = ranks.std(axis=1)
    terms = (np.exp(-current / rank_temp) + np.exp(-sigma / consistency_temp)) * (current < n_top)
    return terms.sum(axis=0)


def consensus_lists(queues: list[list[np.ndarray]], n_items: int, n_top: int) -> tuple[np.ndarray, np.ndarray]:
    """(lists int64 [users, n_top] best first, −1 padded; scores float [users, n_top]) from each head's
    snapshots (``queues[h]`` oldest first, each int64 [users, N])."""
    n_users = queues[0][0].shape[0]
    lists = np.full((n_users, n_top), -1, dtype=np.int64)
    scores = np.zeros((n_users, n_top))
    n_cand = sum(q[-1].shape[1] for q in queues)
    for users in user_chunks(n_users, n_items + n_cand):
        cand = np.sort(np.concatenate([q[-1][users] for q in queues], axis=1), axis=1)
        dup = np.zeros(cand.shape, dtype=bool)
        dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
        ranks = np.stack([np.stack([ranks_in(s[users], cand, n_items) for s in q]) for q in queues])
        c = consensus_scores(ranks, n_top)
        c[dup | (cand < 0) | (c <= 0)] = -np.inf
        k = min(n_top, cand.shape[1])
        order = np.argsort(-c, axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(c, order, axis=1)
        lists[users, :k] = np.where(np.isfinite(best), np.take_along_axis(cand, order, axis=1), -1)
        scores[users, :k] = np.where(np.isfinite(best), best, 0.0)
    return lists, scores


class SnapshotQueue:
    """The last ``size`` top-N snapshots of one head (oldest first)."""

    def __init__(self, size: int):
        self.items: deque[np.ndarray] = deque(maxlen=size)

    def push(self, snapshot: np.ndarray) -> None:
        self.items.append(snapshot)

    @property
    def full(self) -> bool:
        return len(self.items) == self.items.maxlen

    def snapshots(self) -> list[np.ndarray]:
        return list(self.items)


def list_metrics(lists: np.ndarray, targets: sp.csr_matrix, other: sp.csr_matrix, ks: list[int]) -> dict[str, float]:
    """Recall/NDCG/HR@K of ranked lists [users, N] (training items already out) against ``targets``,
    the other held-out part's items removed first (as in full-ranking evaluation)."""
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    rows = lists[users]
    drop = hits_from_topk(np.maximum(rows, 0), users, other) | (rows < 0)
    order = np.argsort(drop, axis=1, kind="stable")
    rows = np.take_along_axis(rows, order, axis=1)
    kept = ~np.take_along_axis(drop, order, axis=1)
    hits = hits_from_topk(np.maximum(rows, 0), users, targets) & kept
    if hits.shape[1] < max(ks):  # a list shorter than K: the missing positions are misses
        hits = np.pad(hits, ((0, 0), (0, max(ks) - hits.shape[1])))
    out = metrics_from_hits(hits, np.diff(targets.indptr)[users], ks)
    return {k: round(v, 5) for k, v in out.items() if k.split("@")[0] in ("recall", "ndcg")}
