"""Request bodies the service accepts: JSON only (415 otherwise), at most ``DISTILLREC_MAX_BODY_BYTES`` (413).

Requiring ``application/json`` also means a web page cannot send a request body to the service
without a CORS preflight (``text/plain`` and form bodies are "simple" requests browsers send
cross-origin without asking). A client that disconnects while sending its body is neither an error
of the service nor a 500: it is answered (to nobody) with 499 and counted as such in the metrics.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from service.errors import ServiceError

log = logging.getLogger("distillrec.service")

#: the status nginx uses for "client closed request"; never seen by a client, only in the metrics
CLIENT_CLOSED = 499


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than {limit} bytes (DISTILLREC_MAX_BODY_BYTES).", details={"limit_bytes": limit})


def _is_json(content_type: bytes) -> bool:
    if content_type == b"application/json":  # what nearly every client sends: no decoding on the hot path
        return True
    media = content_type.decode("latin-1").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_json_body(request: Request, limit: int) -> bytes:
    """The raw body of a JSON request, refused early when its type is not JSON or it exceeds ``limit`` bytes."""
    content_type = declared = b""
    for key, value in request.scope["headers"]:  # ASGI names are lower-case; one pass, no Headers object on the hot path
        if key == b"content-type":
            content_type = value
        elif key == b"content-length":
            declared = value
    if not _is_json(content_type):
        shown = content_type.decode("latin-1")[:64] or "none"
        raise UnsupportedMediaType(f"the body must be JSON sent with 'Content-Type: application/json' (got {shown!r}).", details={"content_type": shown})
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def install(app: FastAPI) -> None:
    """Registers the handler for clients that disconnect mid-request."""

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect) -> Response:
        log.debug("client disconnected during %s %s", request.method, request.url.path[:200])
        return Response(status_code=CLIENT_CLOSED)
