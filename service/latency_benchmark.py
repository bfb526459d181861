"""The in-service latency benchmark behind ``POST /v1/benchmark``.

Every model answers the same sampled users through the same code path as ``POST /v1/recommend``
(:meth:`Recommender.recommend`, seen items excluded), one request at a time; the models take turns
user by user so that background load affects them alike. Reported per model: p50/p95/p99/mean
latency (ms), requests per second (1 / mean latency), speed-up over the slowest model (ratio of
p50s) and overlap@k with the first model's lists.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from service.errors import InvalidRequest, ServiceError
from service.recommender import Recommender

METHOD = (
    "in-process, sequential, one user per request through Recommender.recommend (the POST /v1/recommend code path "
    "without HTTP), seen items excluded; models interleaved user by user; latencies with time.perf_counter"
)


class BenchmarkStopped(ServiceError):
    """The benchmark stopped before it finished (its client left, or it ran past its time limit)."""

    status, code = 503, "benchmark_stopped"


def _never() -> str | None:
    return None


def unique_models(models: list[Recommender]) -> list[Recommender]:
    """``models`` without repeats, first occurrence kept (a model listed twice is timed once)."""
    first: dict[str, Recommender] = {}
    for m in models:
        first.setdefault(m.name, m)
    return list(first.values())


def latency_summary(seconds: np.ndarray) -> dict:
    """p50 / p95 / p99 / mean in milliseconds and requests per second of per-request wall times (seconds)."""
    ms = np.asarray(seconds) * 1e3
    p50, p95, p99 = (float(v) for v in np.percentile(ms, (50, 95, 99)))
    return {
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "mean_ms": float(ms.mean()),
        "requests_per_second": float(len(ms) / max(float(np.sum(seconds)), 1e-12)),
    }


def _check(stop: Callable[[], str | None]) -> None:
    reason = stop()
    if reason:
        raise BenchmarkStopped(f"the benchmark stopped early: {reason}.")


def common_users(models: list[Recommender]) -> list[str]:
    """External user ids known to every model (in the first model's order)."""
    first = models[0]
    if all(m.manifest.data.fingerprint == first.manifest.data.fingerprint for m in models[1:]):
        return first.data.user_ids.tolist()
    shared = set(first.data.user_ids.tolist())
    for m in models[1:]:
        shared &= set(m.data.user_ids.tolist())
    return [u for u in first.data.user_ids.tolist() if u in shared]


def run_benchmark(models: list[Recommender], requests: int, k: int, warmup: int, seed: int = 0, stop: Callable[[], str | None] = _never) -> dict:
    """Times ``requests`` recommendations per model (after ``warmup`` untimed ones); see the module doc.

    ``stop()`` is asked before every user; when it returns a reason the run ends with
    :class:`BenchmarkStopped` (the route passes client disconnects and the wall-time limit).
    """
    users_all = common_users(models)
    if not users_all:
        raise InvalidRequest(f"models {[m.name for m in models]} share no user ids, so they cannot be compared on the same users.")
    rng = np.random.default_rng(seed)
    users = [users_all[i] for i in rng.integers(0, len(users_all), size=requests)]
    for m in models:
        for i in range(warmup):
            _check(stop)
            m.recommend(users[i % len(users)], k)
    latencies = [np.empty(requests) for _ in models]
    lists: list[list[list[str]]] = [[] for _ in models]
    clock = time.perf_counter
    for r, user in enumerate(users):
        _check(stop)
        for j, m in enumerate(models):
            t0 = clock()
            rec = m.recommend(user, k)
            latencies[j][r] = clock() - t0
            lists[j].append([item for item, _ in rec.items])
    p50s = [float(np.percentile(lat, 50)) for lat in latencies]
    slowest = max(p50s)
    results = []
    for j, m in enumerate(models):
        overlap = float(np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(lists[j], lists[0])]))
        results.append(
            {
                "model": m.name,
                "version": m.version,
                "role": m.role,
                "family": m.family,
                "parameters": m.manifest.parameters,
                **latency_summary(latencies[j]),
                "speedup_vs_slowest": float(slowest / max(p50s[j], 1e-12)),
                "overlap_at_k": overlap,
            }
        )
    return {
        "requests": requests,
        "warmup": warmup,
        "k": k,
        "seed": seed,
        "users": len(set(users)),
        "reference_model": models[0].name,
        "results": results,
        "method": METHOD,
    }
