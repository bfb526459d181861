"""Domain errors of the service (plain exceptions, no web framework).

``service.error_handlers`` turns them, and every other error, into one JSON shape::

    {"error": {"code": "unknown_user", "message": "user '9999' is not known to model 'ml100k-student' …", "details": null}}
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A problem with a request (or the service state) that maps to one HTTP status."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, details: Any = None, code: str | None = None):
        super().__init__(message)
        self.message, self.details = message, details
        if code:
            self.code = code


class NotFound(ServiceError):
    status, code = 404, "not_found"


class UnknownModel(NotFound):
    code = "unknown_model"


class UnknownUser(NotFound):
    code = "unknown_user"


class UnknownItem(NotFound):
    code = "unknown_item"


class InvalidRequest(ServiceError):
    status, code = 422, "invalid_request"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class Conflict(ServiceError):
    status, code = 409, "conflict"


class Busy(ServiceError):
    status, code = 429, "busy"


class NotReady(ServiceError):
    status, code = 503, "not_ready"
