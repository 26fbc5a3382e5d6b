"""Typed errors for Kubernetes API failures, chosen from the HTTP code and Status reason.

Callers branch on the class (`except NotFoundError`), never on message text. Every
`ApiError` keeps the server's `Status` dict in `.body`, so nothing the server said is lost.
409 is split by reason: AlreadyExists (create of an existing name) versus Conflict (stale
resourceVersion; the one `retry_on_conflict` retries). A watch ERROR event with code 410
becomes `GoneError`, the signal for an informer to relist.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AlreadyExistsError",
    "ApiError",
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "GoneError",
    "InternalError",
    "InvalidError",
    "MethodNotAllowedError",
    "NotFoundError",
    "RequestEntityTooLargeError",
    "ServerTimeoutError",
    "ServiceUnavailableError",
    "TooManyRequestsError",
    "TransportError",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "error_from_response",
    "error_from_status",
]


class ApiError(Exception):
    """The apiserver answered with a failure Status."""

    default_reason = "Unknown"

    def __init__(self, status: int, reason: str, message: str, body: Mapping[str, Any]):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = dict(body)


class BadRequestError(ApiError):
    default_reason = "BadRequest"


class UnauthorizedError(ApiError):
    default_reason = "Unauthorized"


class ForbiddenError(ApiError):
    default_reason = "Forbidden"


class NotFoundError(ApiError):
    default_reason = "NotFound"


class MethodNotAllowedError(ApiError):
    default_reason = "MethodNotAllowed"


class AlreadyExistsError(ApiError):
    default_reason = "AlreadyExists"


class ConflictError(ApiError):
    default_reason = "Conflict"


class GoneError(ApiError):
    default_reason = "Expired"


class RequestEntityTooLargeError(ApiError):
    default_reason = "RequestEntityTooLarge"


class UnsupportedMediaTypeError(ApiError):
    default_reason = "UnsupportedMediaType"


class InvalidError(ApiError):
    default_reason = "Invalid"


class TooManyRequestsError(ApiError):
    default_reason = "TooManyRequests"


class InternalError(ApiError):
    default_reason = "InternalError"


class ServiceUnavailableError(ApiError):
    default_reason = "ServiceUnavailable"


class ServerTimeoutError(ApiError):
    default_reason = "Timeout"


class TransportError(Exception):
    """The apiserver could not be reached or the connection broke mid-request."""


_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: ConflictError,
    410: GoneError,
    413: RequestEntityTooLargeError,
    415: UnsupportedMediaTypeError,
    422: InvalidError,
    429: TooManyRequestsError,
    500: InternalError,
    503: ServiceUnavailableError,
    504: ServerTimeoutError,
}


def error_from_status(status: int, body: Mapping[str, Any]) -> ApiError:
    """The typed error for an HTTP code and a (possibly empty) Status dict."""
    reason = body.get("reason") or ""
    if status == 409 and reason == "AlreadyExists":
        cls: type[ApiError] = AlreadyExistsError
    else:
        cls = _BY_CODE.get(status, ApiError)
    message = body.get("message") or f"the server answered HTTP {status}"
    return cls(status, reason or cls.default_reason, message, body)


def error_from_response(status: int, body: bytes | str | Mapping[str, Any]) -> ApiError:
    """Build the error from a raw response body (a Status JSON, or any text)."""
    if isinstance(body, Mapping):
        return error_from_status(status, body)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        parsed = {"message": text.strip()[:1000]} if text.strip() else {}
    return error_from_status(status, parsed)
