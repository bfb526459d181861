"""``POST /v1/admin/reload``: load the LATEST versions beside the served ones and swap them in atomically."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.errors import Conflict, Forbidden, Unauthorized
from service.routes.common import error, settings
from service.schemas import ReloadResponse
from service.served_models import load_registry

router = APIRouter(prefix="/v1/admin", tags=["admin"])
bearer = HTTPBearer(auto_error=False, description="DISTILLREC_ADMIN_TOKEN")


def require_admin(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Bearer token check (constant time); admin endpoints are off when no token is configured."""
    token = settings(request).admin_token
    if token is None or not token.get_secret_value():
        raise Forbidden("admin endpoints are disabled: set DISTILLREC_ADMIN_TOKEN to enable them.")
    given = credentials.credentials if credentials is not None and credentials.scheme.lower() == "bearer" else ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise Unauthorized("missing or wrong bearer token: send 'Authorization: Bearer <DISTILLREC_ADMIN_TOKEN>'.")


def _reload(request: Request) -> dict:
    app = request.app
    s = settings(request)
    with app.state.reload_lock:
        new, report = load_registry(s.models_dir, s.ort_threads, s.warmup_requests, s.default_model, previous=app.state.registry)
        app.state.registry = new  # one reference assignment: requests see the old or the new snapshot, never a mix
        app.state.metrics.set_bundles(new)
    report["serving"] = [{"name": n, "version": m.version, "role": m.role, "family": m.family} for n, m in sorted(new.models.items())]
    return report


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={
        401: error("missing or wrong bearer token"),
        403: error("admin endpoints are disabled (no DISTILLREC_ADMIN_TOKEN)"),
        409: error(
            "a bundle failed at this reload (not one that failed the same way before); it keeps serving its previous version, if any; details hold the full report"
        ),
    },
    summary="load each bundle's LATEST version, validate it, and swap it in; a failing bundle keeps its old version",
)
async def reload(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> dict:
    require_admin(request, credentials)
    report = await run_in_threadpool(_reload, request)
    outcome = "failed" if report["failed"] else "ok"
    request.app.state.metrics.reloads.labels(outcome).inc()
    if report["failed"]:
        names = ", ".join(f"{f['bundle']} ({f['reason']})" for f in report["failed"])
        raise Conflict(
            f"reload failed for {names}; those keep serving their previous version, if any. Other bundles were updated.", details=report, code="reload_failed"
        )
    return report
