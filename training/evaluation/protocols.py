"""The two evaluation protocols, for any scorer (torch model, ensemble, exported bundle).

* ``full``: every item is ranked except the user's training items and the targets of the other
  held-out part (for test: the validation items, and vice versa) — the TD / HetComp protocol.
* ``sampled``: each held-out item is ranked against ``n`` items sampled once (per dataset and seed)
  from the user's unobserved items; ties count against the model — the DE-RRD / IR-RRD protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from training.data.dataset import Dataset
from training.evaluation.ranking_metrics import (
    coverage,
    hits_from_sampled_ranks,
    hits_from_topk,
    metrics_from_hits,
    pessimistic_rank,
)
from training.evaluation.topk import topk_excluding_rows
from training.sampling import sample_excluding


class Scorer(Protocol):
    """Anything that scores users against items (indices)."""

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """float [b, n_items]."""

    def score_candidates(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """float [b, c] for items [b, c]."""


@dataclass
class EvalResult:
    """Metrics of one part (valid/test) under one protocol."""

    protocol: str
    part: str
    metrics: dict[str, float]
    users: int
    excluded: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"protocol": self.protocol, "part": self.part, "users": self.users, "excluded": self.excluded, "metrics": self.metrics, **self.extra}


def _user_batches(users: np.ndarray, n_items: int, budget: int = 1 << 23):
    step = max(1, budget // max(1, n_items))
    for start in range(0, len(users), step):
        yield users[start : start + step]


def top_k_excluding(scorer: Scorer, users: np.ndarray, excluded: sp.csr_matrix, k: int) -> np.ndarray:
    """int64 [len(users), k]: each user's k best items, excluding ``excluded[user]``, best first."""
    excluded = excluded.tocsr()
    if not excluded.has_sorted_indices:
        excluded = excluded.sorted_indices()
    k = min(k, excluded.shape[1])
    return np.concatenate(
        [topk_excluding_rows(scorer.score_all(batch), batch, excluded, k) for batch in _user_batches(users, excluded.shape[1])]
        or [np.empty((0, k), dtype=np.int64)]
    )


def _parts(dataset: Dataset, part: str) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
    targets = dataset.valid if part == "valid" else dataset.test
    other = dataset.test if part == "valid" else dataset.valid
    return targets, other


def evaluate_full(scorer: Scorer, dataset: Dataset, part: str, ks: list[int]) -> EvalResult:
    """Full ranking over all items but the user's training items and the other part's targets."""
    targets, other = _parts(dataset, part)
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    excluded = (dataset.train + other).tocsr()
    k_max = max(ks)
    topk = top_k_excluding(scorer, users, excluded, k_max)
    hits = hits_from_topk(topk, users, targets)
    metrics = metrics_from_hits(hits, np.diff(targets.indptr)[users], ks)
    for k in ks:
        metrics[f"coverage@{k}"] = coverage(topk, dataset.n_items, k)
    return EvalResult("full", part, metrics, len(users), excluded=f"train+{'test' if part == 'valid' else 'valid'}")


def sampled_candidates(dataset: Dataset, n: int, seed: int) -> np.ndarray:
    """int64 [n_users, n]: per user, ``n`` distinct items never observed in train, valid or test.

    Drawn once per (dataset, n, seed) so every model and epoch is ranked against the same items.
    """
    key = ("sampled", n, seed)
    if key not in dataset._cache:
        observed = (dataset.train + dataset.valid + dataset.test).tocsr()
        rng = np.random.default_rng(seed)
        dataset._cache[key] = sample_excluding(rng, np.arange(dataset.n_users), observed, n, unique=True)
    return dataset._cache[key]


def evaluate_sampled(scorer: Scorer, dataset: Dataset, part: str, ks: list[int], n: int = 499, seed: int = 0) -> EvalResult:
    """Each held-out item vs the user's ``n`` sampled unobserved items, pessimistic ties."""
    targets, _ = _parts(dataset, part)
    negs = sampled_candidates(dataset, n, seed)
    coo = targets.tocoo()
    users, items = coo.row.astype(np.int64), coo.col.astype(np.int64)
    ranks = np.empty(len(users), dtype=np.int64)
    step = max(1, (1 << 22) // (n + 1))
    for s in range(0, len(users), step):
        u, t = users[s : s + step], items[s : s + step]
        cand = np.concatenate([t[:, None], negs[u]], axis=1)
        scores = np.asarray(scorer.score_candidates(u, cand), dtype=np.float32)
        ranks[s : s + step] = pessimistic_rank(scores[:, 0], scores[:, 1:])
    hits = hits_from_sampled_ranks(ranks, max(ks))
    metrics = metrics_from_hits(hits, np.ones(len(users), dtype=np.int64), ks)
    return EvalResult(f"sampled-{n}", part, metrics, len(np.unique(users)), excluded="train+valid+test (negatives)")


def evaluate(scorer: Scorer, dataset: Dataset, part: str, protocol: str, ks: list[int], sampled_negatives: int = 499, seed: int = 0) -> EvalResult:
    """Dispatches to :func:`evaluate_full` or :func:`evaluate_sampled`."""
    if protocol == "full":
        return evaluate_full(scorer, dataset, part, ks)
    if protocol == "sampled":
        return evaluate_sampled(scorer, dataset, part, ks, sampled_negatives, seed)
    raise ValueError(f"unknown protocol {protocol!r}; use 'full' or 'sampled'")
