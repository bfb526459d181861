"""Operations endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.routes.common import registry
from service.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse, summary="the process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@router.head("/healthz", include_in_schema=False)  # load balancers probe with HEAD
async def healthz_head() -> Response:
    return Response(status_code=200)


def readiness(request: Request) -> dict:
    reg = registry(request)
    return {
        "ready": bool(reg.models),
        "loaded": [{"name": n, "version": m.version, "role": m.role, "family": m.family} for n, m in sorted(reg.models.items())],
        "failed": [f.to_dict() for _, f in sorted(reg.failures.items())],
        "default_model": reg.default_name,
        "reason": None if reg.models else (reg.problem or "no bundle could be loaded; 'failed' says why."),
    }


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="200 when at least one bundle is loaded and warmed up, else 503",
    responses={503: {"model": ReadyResponse, "description": "no bundle is loaded; 'failed' says why"}},
)
async def readyz(request: Request):
    body = readiness(request)
    return body if body["ready"] else JSONResponse(body, status_code=503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text exposition format"}},
)
async def metrics(request: Request) -> Response:
    m = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)
