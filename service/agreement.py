"""Agreement and latency maths of endpoint comparisons (pure functions, no I/O).

Every agreement measure compares a candidate's top-k list with a reference's top-k list for the
same user (item ids, best first):

* **overlap@k** ``|A ∩ R| / |R|``: the share of the reference's items the candidate also returns;
* **rank-biased overlap** (RBO, extrapolated, persistence ``p``): a weighted mean of the overlap at
  every depth ``d`` (weights ``p^d``), so agreement at the top counts more; 1 for identical lists,
  0 for disjoint ones;
* **Kendall τ of the shared items**: (concordant − discordant) / pairs over the items present in
  both lists, by their positions; undefined (``None``) when fewer than two items are shared;
* **teacher-relative NDCG@k**: the candidate's list scored with the reference's items as the
  relevant ones (binary gain, log2 discount), divided by the best possible score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: persistence of rank-biased overlap: the top 10 positions carry about 86 % of the weight
RBO_P = 0.9


def overlap_at_k(candidate: Sequence[str], reference: Sequence[str]) -> float:
    """``|candidate ∩ reference| / |reference|`` (1.0 when both are empty)."""
    if not reference:
        return 1.0 if not candidate else 0.0
    return len(set(candidate) & set(reference)) / len(reference)


def rank_biased_overlap(candidate: Sequence[str], reference: Sequence[str], p: float = RBO_P) -> float:
    """Extrapolated rank-biased overlap of two finite rankings (evaluated to the longer list's depth).

    ``RBO = (X_k / k)·p^k + (1 − p)/p · Σ_{d=1..k} (X_d / d)·p^d`` where ``X_d`` is the number of
    items shared by the two top-d prefixes.
    """
    depth = max(len(candidate), len(reference))
    if depth == 0:
        return 1.0
    seen_c: set[str] = set()
    seen_r: set[str] = set()
    shared = 0
    total = 0.0
    for d in range(1, depth + 1):
        c = candidate[d - 1] if d <= len(candidate) else None
        r = reference[d - 1] if d <= len(reference) else None
        if c is not None and r is not None and c == r:
            shared += 1
        else:
            if c is not None:
                shared += c in seen_r
                seen_c.add(c)
            if r is not None:
                shared += r in seen_c
                seen_r.add(r)
        total += (shared / d) * p**d
    return (shared / depth) * p**depth + (1 - p) / p * total


def kendall_tau_shared(candidate: Sequence[str], reference: Sequence[str]) -> float | None:
    """Kendall τ between the two lists' orders of the items both contain; ``None`` below two shared items."""
    pos_ref = {item: i for i, item in enumerate(reference)}
    ranks = [pos_ref[item] for item in candidate if item in pos_ref]  # reference positions, in candidate order
    n = len(ranks)
    if n < 2:
        return None
    r = np.asarray(ranks)
    signs = np.sign(r[None, :] - r[:, None])  # +1 where a later candidate item is also later in the reference
    return float(np.triu(signs, 1).sum()) / (n * (n - 1) / 2)


def ndcg_vs_reference(candidate: Sequence[str], reference: Sequence[str], k: int) -> float:
    """NDCG@k of ``candidate`` with the items of ``reference`` (its top k) as the relevant ones."""
    relevant = set(reference[:k])
    if not relevant:
        return 1.0 if not candidate else 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, item in enumerate(candidate[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal


def agreement(candidate: Sequence[str], reference: Sequence[str], k: int) -> dict[str, float | None]:
    """Every measure above for one user."""
    return {
        "overlap_at_k": overlap_at_k(candidate, reference),
        "rbo": rank_biased_overlap(candidate, reference),
        "kendall_tau": kendall_tau_shared(candidate, reference),
        "ndcg_at_k": ndcg_vs_reference(candidate, reference, k),
    }


def mean_agreement(pairs: Sequence[tuple[Sequence[str], Sequence[str]]], k: int) -> dict[str, float | None]:
    """The per-user measures averaged over ``pairs`` of (candidate, reference) lists; ``users`` counts the pairs.

    Kendall τ is averaged over the users where it is defined; every mean is ``None`` without users.
    """
    rows = [agreement(c, r, k) for c, r in pairs]
    out: dict[str, float | None] = {"users": len(rows)}
    for key in ("overlap_at_k", "rbo", "kendall_tau", "ndcg_at_k"):
        values = [v for row in rows if (v := row[key]) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def latency_stats(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50 / p95 / p99 / mean in milliseconds of per-request wall times in seconds (``None`` without any)."""
    if len(seconds) == 0:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None}
    ms = np.asarray(seconds, dtype=float) * 1e3
    p50, p95, p99 = (float(v) for v in np.percentile(ms, (50, 95, 99)))
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "mean_ms": float(ms.mean())}
