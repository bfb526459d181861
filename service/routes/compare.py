"""``POST /v1/compare``: local bundles and teacher endpoints, end to end over HTTP, on the same users."""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.compare_schemas import CompareRequest, CompareResponse
from service.comparison import Target, run_comparison
from service.errors import Busy, InvalidRequest, NotFound
from service.latency_benchmark import common_users
from service.routes.common import INVALID, NOT_FOUND, NOT_READY, capped_default, check_limit, error, json_body, parse_body, registry, settings

router = APIRouter(prefix="/v1", tags=["benchmark"])
DISCONNECT_POLL_S = 0.25


def self_url(request: Request) -> str:
    """Where local bundles are called: DISTILLREC_SELF_URL, else the socket address this request arrived on
    (never the Host header, which the client controls)."""
    configured = settings(request).self_url
    if configured:
        return configured
    host, port = request.scope["server"]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def resolve_targets(request: Request, names: list[str]) -> list[Target]:
    """Each name as a local bundle or a configured endpoint; 404 for neither, 422 for both or twice."""
    reg, endpoints = registry(request), settings(request).endpoints()
    if len(set(names)) != len(names):
        raise InvalidRequest(f"targets {names} name a target twice; name each once.")
    local_url = self_url(request)
    out = []
    for name in names:
        if name in endpoints and name in reg.models:
            raise InvalidRequest(f"{name!r} is both a local bundle and a teacher endpoint; rename the endpoint in DISTILLREC_TEACHER_ENDPOINTS.")
        if name in endpoints:
            ep = endpoints[name]
            out.append(Target(name, "endpoint", ep.url, ep.model))
        else:
            out.append(Target(reg.get(name).name, "local", local_url, name))  # UnknownModel (404) lists what is served
    return out


def sample_users(request: Request, targets: list[Target], n: int, seed: int) -> list[str]:
    """``n`` users (seeded), known to every local target (or to the default model when all are remote)."""
    reg = registry(request)
    local = [reg.get(t.model) for t in targets if t.kind == "local"] or [reg.get(None)]
    pool = common_users(local)
    if not pool:
        raise InvalidRequest(f"the local models {[m.name for m in local]} share no user ids, so they cannot be compared on the same users.")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(pool), size=n, replace=n > len(pool))
    return [pool[i] for i in picks]


async def _unless_disconnected(request: Request, coro):
    """Runs ``coro``; cancels it (and returns None) when the client disconnects first."""
    task = asyncio.ensure_future(coro)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                return None
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def limits_in_schema(schema: dict, s) -> None:
    """Writes the configured /v1/compare limits into the served OpenAPI schema."""
    props = schema.get("components", {}).get("schemas", {}).get("CompareRequest", {}).get("properties", {})
    for field, limit in (("users", s.compare_max_users), ("concurrency", s.compare_max_concurrency)):
        if field in props:
            props[field]["maximum"] = limit
            props[field]["default"] = min(props[field]["default"], limit)
    for option in props.get("timeout_s", {}).get("anyOf", []):
        if option.get("type") == "number":
            option["maximum"] = s.remote_timeout_s


@router.post(
    "/compare",
    response_model=CompareResponse,
    responses={**NOT_FOUND, **INVALID, **NOT_READY, 429: error("another comparison is running; retry when it is done")},
    openapi_extra=json_body(CompareRequest),
    summary="end-to-end latency over HTTP and top-k agreement of local bundles and teacher endpoints on the same users",
)
async def compare(request: Request):
    body = await parse_body(request, CompareRequest)
    s = settings(request)
    k = capped_default(body, "k", s.max_k)
    users = capped_default(body, "users", s.compare_max_users)
    check_limit("k", k, s.max_k, "DISTILLREC_MAX_K")
    check_limit("users", users, s.compare_max_users, "DISTILLREC_COMPARE_MAX_USERS")
    check_limit("concurrency", body.concurrency, s.compare_max_concurrency, "DISTILLREC_COMPARE_MAX_CONCURRENCY")
    timeout = body.timeout_s or s.remote_timeout_s
    if timeout > s.remote_timeout_s:
        raise InvalidRequest(f"timeout_s is {timeout:g}, above the limit {s.remote_timeout_s:g} (DISTILLREC_REMOTE_TIMEOUT_S).")
    targets = resolve_targets(request, body.targets)
    names = [t.name for t in targets]
    if body.reference is not None and body.reference not in names:
        raise NotFound(f"reference {body.reference!r} is not among the targets {names}; name one of them.", code="unknown_reference")
    reference = names.index(body.reference) if body.reference else next((j for j, t in enumerate(targets) if t.kind == "endpoint"), 0)
    sample = sample_users(request, targets, users, body.seed)
    state = request.app.state
    if getattr(state, "compare_running", False):  # one at a time: a comparison must not exhaust the server
        raise Busy("another comparison is running; retry when it is done.")
    state.compare_running = True
    try:
        report = await _unless_disconnected(request, run_comparison(targets, sample, k, body.concurrency, timeout, s.compare_max_seconds, reference))
    finally:
        state.compare_running = False
    if report is None:
        return Response(status_code=499)  # nobody is listening: client closed the request
    return {**report, "seed": body.seed}
