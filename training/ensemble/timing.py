"""Scoring cost of a scorer: wall seconds to produce top-K lists (seen items excluded) per 1,000 users."""

from __future__ import annotations

import time

import numpy as np
import torch

from training.data.dataset import Dataset
from training.evaluation import top_k_excluding


def scoring_ms_per_1k_users(scorer, dataset: Dataset, k: int = 50, n_users: int = 1000, repeats: int = 5, threads: int | None = 1, seed: int = 0) -> dict:
    """Times :func:`top_k_excluding` (score every item, mask the seen ones, take the top ``k``).

    ``n_users`` users are drawn once (all of them when the data has fewer); the fastest of
    ``repeats`` runs is kept (the machine is shared, so the minimum is the least noisy estimate of
    the cost itself) and scaled to milliseconds per 1,000 users. One-off preparation (a torch
    model's representations, as a deployment precomputes them) is not timed.
    """
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(dataset.n_users, size=min(n_users, dataset.n_users), replace=False))
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        top_k_excluding(scorer, users[:8], dataset.train, k)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            top_k_excluding(scorer, users, dataset.train, k)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    scale = 1000.0 / len(users)
    return {
        "ms_per_1k_users": round(min(times) * scale * 1000, 2),
        "median_ms_per_1k_users": round(float(np.median(times)) * scale * 1000, 2),
        "users": int(len(users)),
        "k": k,
        "repeats": repeats,
        "torch_threads": threads or old,
    }
