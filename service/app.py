"""``create_app(settings)``: the FastAPI application (no torch, nothing from ``training``).

The lifespan loads every bundle under ``settings.models_dir`` and warms each up before the server
accepts traffic; ``/readyz`` reports what loaded and what failed (and why).
"""

from __future__ import annotations

import html
import logging
import threading
from contextlib import asynccontextmanager
from importlib import metadata

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from service import memory, request_guard, scoring_gate
from service.direct_routes import DirectRoutes
from service.error_handlers import ErrorResponse, install_error_handlers
from service.prometheus import MetricsMiddleware, ServiceMetrics
from service.routes import admin, benchmark, compare, models, ops, recommend
from service.routes.common import BODY_MODELS
from service.served_models import Registry, load_registry
from service.settings import Settings
from service.shadow import Shadow
from service.threads import one_thread_per_request

log = logging.getLogger("distillrec.service")


def _version() -> str:
    try:
        return metadata.version("distillrec")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _configure_logging(level: str) -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level.upper())


def _limits_in_schema(schema: dict, settings: Settings) -> dict:
    """Writes the configured limits into the OpenAPI schema and gives every 422 the service's error shape."""
    comps = schema.setdefault("components", {}).setdefault("schemas", {})
    schema_models: list[type[BaseModel]] = [ErrorResponse, *BODY_MODELS]
    for model in schema_models:  # bodies parsed by service.routes.common.parse_body
        if model.__name__ not in comps:
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            comps.update(js.pop("$defs", {}))
            comps[model.__name__] = js
    for name in ("RecommendRequest", "BatchRecommendRequest", "HistoryRequest", "BenchmarkRequest", "CompareRequest"):
        props = comps.get(name, {}).get("properties", {})
        if "k" in props:
            props["k"]["maximum"] = settings.max_k
            props["k"]["default"] = min(props["k"].get("default", 10), settings.max_k)
        for field, limit in (("user_ids", settings.max_batch), ("item_ids", settings.max_history), ("exclude_items", settings.max_history)):
            if field in props:
                props[field]["maxItems"] = limit
        for field in ("requests", "warmup"):
            if field in props:
                props[field]["maximum"] = settings.benchmark_max_requests
                props[field]["default"] = min(props[field]["default"], settings.benchmark_max_requests)
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path in schema.get("paths", {}).values():
        for op in path.values():
            for param in op.get("parameters", []):
                if param.get("name") == "k" and "schema" in param:
                    param["schema"]["maximum"] = settings.max_k
                    param["schema"]["default"] = min(param["schema"].get("default", 10), settings.max_k)
            resp = op.get("responses", {}).get("422")
            if resp is not None:
                resp["description"] = "invalid request: a field is malformed or outside its limits"
                resp["content"] = {"application/json": {"schema": error_ref}}
    for unused in ("HTTPValidationError", "ValidationError"):
        comps.pop(unused, None)
    return schema


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the service for ``settings`` (default: from the environment / ``.env``)."""
    settings = settings or Settings()
    _configure_logging(settings.log_level)
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        one_thread_per_request()  # latency under concurrency, not throughput of one query
        scoring_gate.set_limit(settings.max_scoring_calls)
        memory.return_large_buffers()
        registry, _ = await run_in_threadpool(load_registry, settings.models_dir, settings.ort_threads, settings.warmup_requests, settings.default_model)
        app.state.registry = registry
        metrics.set_bundles(registry)
        log.info(
            "serving %d bundle(s) from %s: %s; default model: %s",
            len(registry.models),
            settings.models_dir,
            ", ".join(sorted(registry.models)) or "none",
            registry.default_name,
        )
        if settings.shadow_fraction > 0 and settings.shadow_endpoint:  # Settings requires the endpoint when the fraction is above 0
            endpoint = settings.endpoints()[settings.shadow_endpoint]
            app.state.shadow = Shadow(
                endpoint, settings.shadow_fraction, settings.shadow_concurrency, settings.shadow_queue, settings.remote_timeout_s, metrics.registry
            )
            await app.state.shadow.start()
        try:
            yield
        finally:
            if app.state.shadow is not None:
                await app.state.shadow.close()

    app = FastAPI(
        title="distillrec",
        version=_version(),
        summary="Top-k recommendations from distilled students and their teachers (ONNX Runtime + FAISS).",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's Swagger UI and ReDoc load from a CDN (blank offline): /docs below is self-contained
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.registry = Registry()
    app.state.reload_lock = threading.Lock()
    app.state.benchmark_lock = threading.Lock()
    app.state.shadow = None  # service.shadow.Shadow when DISTILLREC_SHADOW_FRACTION > 0
    install_error_handlers(app)
    request_guard.install(app)
    app.add_middleware(DirectRoutes, fastapi_app=app, routers=[recommend.router])  # innermost: inside the metrics middleware
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for module in (recommend, ops, models, benchmark, compare, admin):  # hot paths first: routes are matched in order
        app.include_router(module.router)

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def api_docs() -> str:
        """Every endpoint with its summary, rendered from the OpenAPI schema without any external asset."""
        rows = "".join(
            f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td><td>{html.escape(op.get('summary', ''))}</td></tr>"
            for path, ops in app.openapi()["paths"].items()
            for method, op in ops.items()
        )
        return (
            f"<!doctype html><meta charset=utf-8><title>{app.title} API</title><h1>{app.title} {app.version} API</h1>"
            f"<p>The full schema is <a href='/openapi.json'>/openapi.json</a> (open it in any OpenAPI viewer).</p><table>{rows}</table>"
        )

    # FastAPI registers /openapi.json first; matching costs a few µs per route on every request, so
    # move the documentation routes behind the API routes
    docs = {app.openapi_url, "/docs"}
    app.router.routes.sort(key=lambda route: getattr(route, "path", None) in docs)

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            app.openapi_schema = _limits_in_schema(schema, settings)
            compare.limits_in_schema(app.openapi_schema, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to replace the schema generator
    return app
