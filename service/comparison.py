"""Compare recommendation endpoints over HTTP: end-to-end latency and agreement on the same users.

Used by ``POST /v1/compare`` (local bundles through the service's own address, teacher endpoints
from the configuration) and by ``distillrec compare`` (any URLs). Every target answers the same
users through ``POST /v1/recommend`` (seen items excluded). ``concurrency`` workers each take the
next user and ask every target in turn, the order rotated per user so that no target always goes
first; so each target has at most ``concurrency`` requests in flight. The run stops early (and
says so) when ``max_seconds`` pass.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from service.agreement import latency_stats, mean_agreement
from service.http1 import Http1Pool
from service.remote import Reply, call_recommend

METHOD = (
    "POST /v1/recommend over HTTP/1.1 keep-alive connections for every target, end to end (serialisation and network included), seen items excluded; "
    "users interleaved: each of `concurrency` workers takes the next user and asks every target in turn (order rotated per user); "
    "latency percentiles over answered requests; throughput per target = concurrency / mean latency (Little's law: what it sustains with "
    "`concurrency` requests in flight), as the targets take turns and share the run's wall time; "
    "agreement with the reference over the users both answered"
)


@dataclass(frozen=True)
class Target:
    """Something that answers ``POST {url}/v1/recommend``: a local bundle, a teacher endpoint or any URL."""

    name: str
    kind: str  # "local" | "endpoint" | "url"
    url: str
    model: str | None = None

    def body(self, user_id: str, k: int) -> dict:
        body = {"user_id": user_id, "k": k}
        if self.model:
            body["model"] = self.model
        return body


async def run_comparison(
    targets: list[Target], users: list[str], k: int, concurrency: int, timeout: float, max_seconds: float, reference: int = 0, samples: bool = False
) -> dict:
    """Asks every target for every user (see the module doc); the report of :func:`summarise`."""
    replies: list[list[Reply | None]] = [[None] * len(users) for _ in targets]
    next_user = 0
    pools = [Http1Pool(t.url, max_idle=concurrency) for t in targets]

    async def worker() -> None:
        nonlocal next_user
        while next_user < len(users):
            u = next_user
            next_user += 1
            for step in range(len(targets)):
                j = (u + step) % len(targets)
                replies[j][u] = await call_recommend(pools[j], targets[j].body(users[u], k), timeout)

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(users)))]
    try:
        _, pending = await asyncio.wait(tasks, timeout=max_seconds)
    finally:  # also when this coroutine is cancelled (the client went away)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pool in pools:
            pool.close()
    wall = time.perf_counter() - t0
    # off the event loop: with k in the hundreds and many users the agreement maths takes a while
    return await asyncio.to_thread(summarise, targets, users, replies, k, concurrency, timeout, wall, bool(pending), reference, samples)


def summarise(
    targets: list[Target],
    users: list[str],
    replies: list[list[Reply | None]],
    k: int,
    concurrency: int,
    timeout: float,
    wall: float,
    stopped_early: bool,
    reference: int = 0,
    samples: bool = False,
) -> dict:
    """Per-target latency, errors and agreement with ``targets[reference]`` over the users both answered
    (with ``samples``, also every answered request's latency in ms, for plots)."""
    done = [u for u in range(len(users)) if all(r[u] is not None for r in replies)]
    # answered[j][i]: target j's reply to user done[i] (none is None there; the filter only narrows the type)
    answered = [[reply for u in done if (reply := r[u]) is not None] for r in replies]
    p50: dict[int, float | None] = {}
    results = []
    for j, target in enumerate(targets):
        mine = answered[j]
        ok = [r for r in mine if r.error is None]
        errors = Counter(r.error for r in mine if r.error is not None)
        pairs = [(a.items, b.items) for a, b in zip(mine, answered[reference]) if a.items is not None and b.items is not None]
        stats = latency_stats([r.seconds for r in ok])
        p50[j] = stats["p50_ms"]
        results.append(
            {
                "name": target.name,
                "kind": target.kind,
                "url": target.url,
                "model": target.model,
                "requests": len(mine),
                "ok": len(ok),
                "errors": sum(errors.values()),
                "timeouts": errors.get("timeout", 0),
                "error_kinds": dict(sorted(errors.items())),
                **stats,
                "throughput_rps": concurrency / (stats["mean_ms"] / 1e3) if stats["mean_ms"] else 0.0,
                "agreement": mean_agreement(pairs, k),
                **({"latencies_ms": [r.seconds * 1e3 for r in ok]} if samples else {}),
            }
        )
    for j, row in enumerate(results):
        ref_p50, own_p50 = p50[reference], p50[j]
        row["speedup_p50_vs_reference"] = ref_p50 / own_p50 if ref_p50 and own_p50 else None
    return {
        "k": k,
        "concurrency": concurrency,
        "timeout_s": timeout,
        "users_sampled": len(users),
        "users_done": len(done),
        "distinct_users": len({users[u] for u in done}),
        "wall_s": wall,
        "requests_per_second": len(done) * len(targets) / wall if wall > 0 else 0.0,
        "stopped_early": stopped_early,
        "reference": targets[reference].name,
        "targets": results,
        "method": METHOD,
    }
