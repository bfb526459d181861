"""What every router needs: the current registry snapshot, settings, limit checks, documented errors."""

from __future__ import annotations

import time
from typing import Any, TypeVar

import pydantic_core
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from service.error_handlers import ErrorResponse
from service.errors import InvalidRequest
from service.prometheus import set_model_label
from service.recommender import Recommendation, Recommender
from service.request_guard import read_json_body
from service.served_models import Registry
from service.settings import Settings

T = TypeVar("T", bound=BaseModel)


def error(description: str) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry whose body is the service's :class:`ErrorResponse`."""
    return {"model": ErrorResponse, "description": description}


# FastAPI's ``responses`` type
Responses = dict[int | str, dict[str, Any]]

INVALID: Responses = {422: error("invalid request: a field is malformed or outside its limits")}
NOT_FOUND: Responses = {404: error("unknown model, user or item (the message names it)")}
NOT_READY: Responses = {503: error("no bundle is loaded (see /readyz)")}


def registry(request: Request) -> Registry:
    return request.app.state.registry


def settings(request: Request) -> Settings:
    return request.app.state.settings


def resolve_model(request: Request, name: str | None) -> Recommender:
    """The recommender a request asks for (or the default), recorded as the metrics' model label."""
    rec = registry(request).get(name)
    set_model_label(request, rec.name)
    return rec


def capped_default(body: BaseModel, field: str, limit: int) -> int:
    """A field's value; when the client left it out, its default lowered to the configured ``limit``."""
    value = getattr(body, field)
    return value if field in body.model_fields_set else min(value, limit)


def check_limit(what: str, value: int, limit: int, setting: str, field: str | None = None) -> None:
    """422 when ``value`` exceeds the configured ``limit`` (named by its ``setting``); details name the field."""
    if value > limit:
        details = {"field": field or what, "value": value, "limit": limit, "setting": setting}
        raise InvalidRequest(f"{what} is {value}, above the limit {limit} ({setting}).", details=details)


def scored(rec: Recommendation) -> list[dict]:
    return [{"item_id": item, "score": score} for item, score in rec.items]


def ms_since(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1e3, 4)


def json_response(payload: dict) -> Response:
    """Serialises a reply built to match its ``response_model`` directly (pydantic-core, ~4 µs).

    FastAPI would otherwise validate the dict against the model and serialise it again, which costs
    more than computing a student's recommendations; the schemathesis test checks the replies
    against the OpenAPI schema instead.
    """
    return Response(pydantic_core.to_json(payload), media_type="application/json")


#: request body models, added to the OpenAPI components by ``service.app`` (the routes reference them)
BODY_MODELS: list[type[BaseModel]] = []


def json_body(model: type[BaseModel]) -> dict:
    """``openapi_extra`` documenting a JSON request body of ``model`` (parsed by :func:`parse_body`)."""
    if model not in BODY_MODELS:
        BODY_MODELS.append(model)
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
        "responses": {
            "413": {"description": "the body is larger than DISTILLREC_MAX_BODY_BYTES", "content": error_body},
            "415": {"description": "the body is not sent as 'Content-Type: application/json'", "content": error_body},
        },
    }


async def parse_body(request: Request, model: type[T]) -> T:
    """Validates the raw JSON body with pydantic-core in one pass (about 50 µs less than FastAPI's
    generic body handling, which matters next to a student's ~50 µs of work); errors become the
    usual 422 through the ``RequestValidationError`` handler."""
    raw = await read_json_body(request, settings(request).max_body_bytes)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors(include_url=False, include_context=False, include_input=False)]
        raise RequestValidationError(errors) from None
