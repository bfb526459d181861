"""``/v1/models``: what is served, with offline metrics and provenance."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request

from service.routes.common import NOT_FOUND, registry
from service.schemas import ModelInfo, ModelsResponse

router = APIRouter(prefix="/v1", tags=["models"])


def info(request: Request, name: str) -> dict:
    reg = registry(request)
    rec = reg.get(name)
    return {**rec.describe(), "default": name == reg.default_name}


@router.get("/models", response_model=ModelsResponse, summary="served bundles, the default one, and bundles that failed to load")
async def list_models(request: Request) -> dict:
    reg = registry(request)
    return {
        "default_model": reg.default_name,
        "models": [info(request, n) for n in sorted(reg.models)],
        "failed": [f.to_dict() for _, f in sorted(reg.failures.items())],
    }


@router.get("/models/{name}", response_model=ModelInfo, responses=NOT_FOUND, summary="one bundle: role, family, dimension, parameters, index, offline metrics, version")
async def get_model(request: Request, name: str = Path(description="bundle name")) -> dict:
    return info(request, name)
