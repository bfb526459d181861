"""``/v1/models``: what is served, with offline metrics and provenance."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request

from service.compare_schemas import ModelsWithRemoteResponse
from service.remote import probe_all
from service.routes.common import NOT_FOUND, registry, settings
from service.schemas import ModelInfo

router = APIRouter(prefix="/v1", tags=["models"])
PROBE_TIMEOUT_S = 1.0  # a teacher endpoint that is down delays /v1/models by at most this


def info(request: Request, name: str) -> dict:
    reg = registry(request)
    rec = reg.get(name)
    return {**rec.describe(), "default": name == reg.default_name}


@router.get(
    "/models",
    response_model=ModelsWithRemoteResponse,
    summary="served bundles, the default one, bundles that failed to load, and the teacher endpoints with their reachability",
)
async def list_models(request: Request) -> dict:
    reg, s = registry(request), settings(request)
    return {
        "default_model": reg.default_name,
        "models": [info(request, n) for n in sorted(reg.models)],
        "failed": [f.to_dict() for _, f in sorted(reg.failures.items())],
        "remote_teachers": await probe_all(s.endpoints(), min(PROBE_TIMEOUT_S, s.remote_timeout_s)),
    }


@router.get(
    "/models/{name}", response_model=ModelInfo, responses=NOT_FOUND, summary="one bundle: role, family, dimension, parameters, index, offline metrics, version"
)
async def get_model(request: Request, name: str = Path(description="bundle name")) -> dict:
    return info(request, name)
