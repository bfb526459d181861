"""Direct dispatch of the hot JSON endpoints, past FastAPI's per-request routing and dependency machinery.

The recommend endpoints take the raw :class:`~starlette.requests.Request`, parse and validate the body
themselves (``service.routes.common.parse_body``) and return a ready :class:`Response`, so FastAPI's
dependency solving, exit stacks and route matching only add work (about half of the CPU time of a
student's recommend). :class:`DirectRoutes` sits just inside the metrics middleware: a request whose exact path
and method belong to an endpoint marked with :func:`direct` is handed to that endpoint at once, with
the same ``scope["route"]`` (the metrics' route label), the same exception handlers (Starlette's own
``wrap_app_handling_exceptions`` with the app's handlers, as ``ExceptionMiddleware`` would use) and
the same response. Everything else, including errors without a handler, goes the usual way. The
routes stay registered with FastAPI, so the OpenAPI schema and ``/docs`` are unchanged. That helper is
private to Starlette: should a release move it, every request takes the usual way (same answers, only
slower).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter
from starlette.requests import Request
from starlette.responses import Response

try:
    from starlette._exception_handler import wrap_app_handling_exceptions
except ImportError:  # a Starlette without it: no direct dispatch
    wrap_app_handling_exceptions = None  # type: ignore[assignment]

Endpoint = Callable[[Request], Awaitable[Response]]
_DIRECT: set[Any] = set()


def direct(endpoint: Endpoint) -> Endpoint:
    """Marks an ``async def endpoint(request: Request) -> Response`` for :class:`DirectRoutes`."""
    _DIRECT.add(endpoint)
    return endpoint


class DirectRoutes:
    """ASGI middleware: ``(path, method)`` of a :func:`direct` endpoint → that endpoint, nothing in between."""

    def __init__(self, app, fastapi_app: FastAPI, routers: list[APIRouter]):
        self.app, self.fastapi_app, self.routers = app, fastapi_app, routers
        self._table: dict[tuple[str, str], tuple[APIRoute, Endpoint]] | None = None
        self._handlers: tuple[dict, dict] = ({}, {})

    def _build(self) -> dict[tuple[str, str], tuple[APIRoute, Endpoint]]:
        """The direct routes of ``routers`` (included without a prefix) and the exception handlers
        ``ExceptionMiddleware`` gets (the 500/Exception handler stays with ``ServerErrorMiddleware``)."""
        table: dict[tuple[str, str], tuple[APIRoute, Endpoint]] = {}
        if wrap_app_handling_exceptions is None:
            return table
        for router in self.routers:
            for route in router.routes:
                if isinstance(route, APIRoute) and route.endpoint in _DIRECT:
                    table.update({(route.path, method): (route, route.endpoint) for method in route.methods or ()})
        handlers: dict = {}
        status: dict = {}
        for key, handler in self.fastapi_app.exception_handlers.items():
            if isinstance(key, int):
                if key != 500:
                    status[key] = handler
            elif key is not Exception:
                handlers[key] = handler
        self._handlers = (handlers, status)
        return table

    async def __call__(self, scope, receive, send) -> None:
        if self._table is None:
            self._table = self._build()
        target = self._table.get((scope["path"], scope["method"])) if scope["type"] == "http" and not scope.get("root_path") else None
        if target is None:
            await self.app(scope, receive, send)
            return
        route, endpoint = target
        scope["route"] = route
        scope["starlette.exception_handlers"] = self._handlers
        request = Request(scope, receive, send)

        async def respond(scope, receive, send) -> None:
            response = await endpoint(request)
            await response(scope, receive, send)

        await wrap_app_handling_exceptions(respond, request)(scope, receive, send)
