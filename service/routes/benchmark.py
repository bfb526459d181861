"""``POST /v1/benchmark``: student vs teacher latency and agreement, measured inside the service."""

from __future__ import annotations

import asyncio
import functools
import threading
import time

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from service.errors import Busy
from service.latency_benchmark import run_benchmark, unique_models
from service.prometheus import set_model_label
from service.routes.common import INVALID, NOT_FOUND, NOT_READY, capped_default, check_limit, error, json_body, parse_body, registry, settings
from service.schemas import BenchmarkRequest, BenchmarkResponse

router = APIRouter(prefix="/v1", tags=["benchmark"])
#: the metrics' model label of a benchmark of several models (one value, whatever the list)
SEVERAL_MODELS = "<several>"
#: how often a running benchmark checks whether its client is still connected
DISCONNECT_POLL_S = 0.25


@router.post(
    "/benchmark",
    response_model=BenchmarkResponse,
    responses={
        **NOT_FOUND,
        **INVALID,
        **NOT_READY,
        429: error("another benchmark is running; retry when it is done"),
        503: error("no bundle is loaded, or the benchmark stopped early: it ran past DISTILLREC_BENCHMARK_MAX_SECONDS"),
    },
    openapi_extra=json_body(BenchmarkRequest),
    summary="latency percentiles, throughput, speed-up and top-k agreement of several models on the same users",
)
async def benchmark(request: Request) -> dict:
    body = await parse_body(request, BenchmarkRequest)
    s = settings(request)
    requests = capped_default(body, "requests", s.benchmark_max_requests)
    warmup = capped_default(body, "warmup", s.benchmark_max_requests)
    k = capped_default(body, "k", s.max_k)
    check_limit("requests", requests, s.benchmark_max_requests, "DISTILLREC_BENCHMARK_MAX_REQUESTS")
    check_limit("warmup", warmup, s.benchmark_max_requests, "DISTILLREC_BENCHMARK_MAX_REQUESTS")
    check_limit("k", k, s.max_k, "DISTILLREC_MAX_K")
    reg = registry(request)
    models = unique_models([reg.get(name) for name in body.models])
    set_model_label(request, models[0].name if len(models) == 1 else SEVERAL_MODELS)  # bounded label values
    lock = request.app.state.benchmark_lock
    if not lock.acquire(blocking=False):  # one at a time: a benchmark must not exhaust the server
        raise Busy("another benchmark is running; retry when it is done.")
    try:
        return await run_until_disconnect(request, s.benchmark_max_seconds, run_benchmark, models, requests, k, warmup, body.seed)
    finally:
        lock.release()


async def run_until_disconnect(request: Request, max_seconds: float, fn, *args):
    """``fn(*args, stop=…)`` in the thread pool; ``stop()`` turns non-empty when the client disconnects
    or ``max_seconds`` have passed, and ``fn`` is expected to end soon after (the caller's lock stays
    held until it has)."""
    gone = threading.Event()
    deadline = time.monotonic() + max_seconds

    def stop() -> str | None:
        if gone.is_set():
            return "the client disconnected"
        if time.monotonic() > deadline:
            return f"it ran past {max_seconds:g} s (DISTILLREC_BENCHMARK_MAX_SECONDS); ask for fewer requests or fewer models"
        return None

    task = asyncio.ensure_future(run_in_threadpool(functools.partial(fn, *args, stop=stop)))
    left = False
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if not task.done() and await request.is_disconnected():
                left = True
                gone.set()
    finally:
        gone.set()
        await asyncio.shield(asyncio.wait({task}))  # never leave the worker running unaccounted
    if left:  # nobody to answer: recorded as a client that left (499), not as a server error
        raise ClientDisconnect()
    return task.result()
