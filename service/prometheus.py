"""Prometheus metrics: request count and latency per route, method, model and status; loaded bundles.

Each app has its own ``CollectorRegistry`` (several apps can live in one process, as in tests).
The middleware is plain ASGI (no per-request task or body copy) so that it costs microseconds.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # no *_created series: they double the exposition for nothing a dashboard uses

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
UNMATCHED = "<unmatched>"
#: methods recorded by name; any other (clients may send any token) is recorded as "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ServiceMetrics:
    """The service's collectors, in their own registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["route", "method", "model", "status"]
        self.requests = Counter("distillrec_http_requests", "HTTP requests handled", labels, registry=self.registry)
        self.latency = Histogram(
            "distillrec_http_request_duration_seconds", "HTTP request latency in seconds (server side)", labels, buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.bundle_info = Gauge(
            "distillrec_bundle_info", "1 for each loaded bundle version", ["bundle", "version", "role", "family", "index"], registry=self.registry
        )
        self.bundles_failed = Gauge("distillrec_bundles_failed", "bundles whose LATEST version could not be loaded", registry=self.registry)
        self._children: dict[tuple, tuple] = {}
        self.reloads = Counter("distillrec_reloads", "admin reloads by outcome", ["outcome"], registry=self.registry)

    def observe(self, route: str, method: str, model: str, status: int, seconds: float) -> None:
        key = (route, method, model, status)
        children = self._children.get(key)
        if children is None:  # labels() costs several µs per call; the label sets are few, so cache them
            labels = (route, method, model, str(status))
            children = self._children[key] = (self.requests.labels(*labels), self.latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    def set_bundles(self, registry) -> None:
        """Mirrors a :class:`service.served_models.Registry` snapshot into the bundle gauges."""
        self.bundle_info.clear()
        for name, rec in registry.models.items():
            index = rec.manifest.index.kind if rec.manifest.index else ("scorer" if rec.manifest.onnx else "ensemble")
            self.bundle_info.labels(name, rec.version, rec.role, rec.family, index).set(1)
        self.bundles_failed.set(len(registry.failures))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def set_model_label(request, name: str) -> None:
    """Lets a handler name the model it used, for the metrics labels."""
    request.scope["distillrec.model"] = name


class MetricsMiddleware:
    """Records every HTTP request in :class:`ServiceMetrics` under its route template (not its raw path)."""

    def __init__(self, app, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.observe(path, method, scope.get("distillrec.model", ""), status, time.perf_counter() - start)
