"""``POST /v1/benchmark``: student vs teacher latency and agreement, measured inside the service."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from service.benchmark import run_benchmark
from service.errors import Busy
from service.metrics import set_model_label
from service.routes.common import INVALID, NOT_FOUND, NOT_READY, capped_default, check_limit, error, json_body, parse_body, registry, settings
from service.schemas import BenchmarkRequest, BenchmarkResponse

router = APIRouter(prefix="/v1", tags=["benchmark"])


@router.post(
    "/benchmark",
    response_model=BenchmarkResponse,
    responses={**NOT_FOUND, **INVALID, **NOT_READY, 429: error("another benchmark is running; retry when it is done")},
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
    models = [reg.get(name) for name in body.models]
    set_model_label(request, "+".join(m.name for m in models))
    lock = request.app.state.benchmark_lock
    if not lock.acquire(blocking=False):  # one at a time: a benchmark must not exhaust the server
        raise Busy("another benchmark is running; retry when it is done.")
    try:
        return await run_in_threadpool(run_benchmark, models, requests, k, warmup, body.seed)
    finally:
        lock.release()
