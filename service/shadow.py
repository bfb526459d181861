"""Shadow mode: mirror a share of live ``POST /v1/recommend`` requests to one teacher endpoint.

The mirror is queued after the student's reply has been sent (a response background task that
only does ``put_nowait``) and sent later by a fixed pool of worker tasks, each with the remote
timeout. A full queue drops the mirror and counts it; nothing in the student's path ever waits for
the teacher. Prometheus gets the teacher's latency, outcomes, drops and the agreement of the two
lists (overlap@k, rank-biased overlap, teacher-relative NDCG@k), all labelled by the configured
endpoint name only.
"""

from __future__ import annotations

import asyncio
import logging
import random

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.background import BackgroundTask

from service.agreement import ndcg_vs_reference, overlap_at_k, rank_biased_overlap
from service.http1 import Http1Pool
from service.prometheus import LATENCY_BUCKETS
from service.remote import Endpoint, call_recommend

log = logging.getLogger("distillrec.service")
AGREEMENT_BUCKETS = tuple(i / 10 for i in range(11))


class Shadow:
    """The queue, the workers and the metrics of shadow mode for one endpoint."""

    def __init__(self, endpoint: Endpoint, fraction: float, concurrency: int, queue_size: int, timeout: float, registry: CollectorRegistry):
        self.endpoint, self.fraction, self.concurrency, self.timeout = endpoint, fraction, concurrency, timeout
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=queue_size)
        self.workers: list[asyncio.Task] = []
        self.pool = Http1Pool(endpoint.url, max_idle=concurrency)
        name = endpoint.name
        self.outcomes = Counter(
            "distillrec_shadow_requests",
            "mirrored requests by outcome (ok, timeout, unreachable, http_<status>, bad_reply)",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.dropped = Counter("distillrec_shadow_dropped", "mirrors dropped because the shadow queue was full", ["endpoint"], registry=registry).labels(name)
        self.queued = Gauge("distillrec_shadow_queue_depth", "mirrors waiting to be sent", ["endpoint"], registry=registry).labels(name)
        self.latency = Histogram(
            "distillrec_shadow_teacher_duration_seconds",
            "end-to-end latency of the teacher endpoint on mirrored requests (answered ones)",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ).labels(name)
        agreement = Histogram(
            "distillrec_shadow_agreement",
            "agreement of the student's list with the teacher's on mirrored requests",
            ["endpoint", "measure"],
            buckets=AGREEMENT_BUCKETS,
            registry=registry,
        )
        self.agreement = {m: agreement.labels(name, m) for m in ("overlap_at_k", "rbo", "ndcg_at_k")}
        self.queued.set_function(self.queue.qsize)

    async def start(self) -> None:
        self.workers = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]
        log.info("shadow mode: mirroring %.1f %% of /v1/recommend requests to %s (%s)", 100 * self.fraction, self.endpoint.name, self.endpoint.url)

    async def close(self) -> None:
        for task in self.workers:
            task.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        self.pool.close()

    def sampled(self) -> bool:
        return self.fraction >= 1.0 or random.random() < self.fraction

    async def enqueue(self, body: dict, student_items: list[str]) -> None:
        """Queues one mirror without waiting; counts a drop when the queue is full."""
        try:
            self.queue.put_nowait((body, student_items))
        except asyncio.QueueFull:
            self.dropped.inc()

    async def _work(self) -> None:
        while True:
            body, student_items = await self.queue.get()
            try:
                reply = await call_recommend(self.pool, body, self.timeout)
                self.outcomes.labels(self.endpoint.name, reply.error or "ok").inc()
                if reply.items is not None:
                    self.latency.observe(reply.seconds)
                    k = body["k"]
                    for measure, value in (
                        ("overlap_at_k", overlap_at_k(student_items, reply.items)),
                        ("rbo", rank_biased_overlap(student_items, reply.items)),
                        ("ndcg_at_k", ndcg_vs_reference(student_items, reply.items, k)),
                    ):
                        self.agreement[measure].observe(value)
            except Exception:  # a bug here must not kill the worker (and silently stop shadow mode)
                log.exception("shadow mirror to %s failed", self.endpoint.name)
            finally:
                self.queue.task_done()


def offer_shadow(request, response, body, k: int, out) -> None:
    """Attaches the mirror of a ``/v1/recommend`` request to its response, when shadow mode samples it."""
    shadow: Shadow | None = request.app.state.shadow
    if shadow is None or not shadow.sampled():
        return
    options = {"exclude_seen": body.exclude_seen, "exclude_items": body.exclude_items, "fallback": body.fallback}
    response.background = BackgroundTask(shadow.enqueue, shadow.endpoint.body(body.user_id, k, **options), [item for item, _ in out.items])
