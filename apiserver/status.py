"""Kubernetes ``Status`` errors: the one way a handler reports failure.

Handlers raise :class:`StatusError`; one middleware turns it into the JSON ``Status``
object Kubernetes clients parse (kubectl prints ``message``; client libraries branch on
``reason`` and ``code``). Constructors below mirror apimachinery's ``errors.New*`` so the
messages read exactly like a real apiserver's.
"""

from __future__ import annotations

from typing import Any

import orjson

# kube-apiserver's field order of a Status (the order of metav1.Status' struct fields).
STATUS_FIELDS = ("kind", "apiVersion", "metadata", "status", "message", "reason", "details",
                 "code")
# Go's encoding/json escapes these inside strings (HTML safety); so does kube's serializer.
_GO_JSON_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"),
                    ("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"))


def is_status(value: Any) -> bool:
    return isinstance(value, dict) and value.get("kind") == "Status"


def encode_status(status: dict[str, Any]) -> bytes:
    """A Status body byte for byte as kube-apiserver writes it: compact JSON with the
    fields in :data:`STATUS_FIELDS` order, Go's HTML escapes, and a trailing newline
    (some clients compare these strings)."""
    ordered = {key: status[key] for key in STATUS_FIELDS if key in status}
    ordered.update((key, value) for key, value in status.items() if key not in ordered)
    body = orjson.dumps(ordered)
    for raw, escaped in _GO_JSON_ESCAPES:
        body = body.replace(raw, escaped)
    return body + b"\n"


class StatusError(Exception):
    """An API failure with its HTTP code, Kubernetes reason and details."""

    def __init__(self, code: int, reason: str, message: str, *,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details:
            status["details"] = self.details
        status["code"] = self.code
        return status


def _qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def _details(name: str, group: str, plural: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": plural}
    if group:
        details["group"] = group
    details.update(extra)
    return details


def not_found(group: str, plural: str, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{_qualified(group, plural)} "{name}" not found',
                       details=_details(name, group, plural))


def already_exists(group: str, plural: str, name: str) -> StatusError:
    return StatusError(409, "AlreadyExists",
                       f'{_qualified(group, plural)} "{name}" already exists',
                       details=_details(name, group, plural))


def conflict(group: str, plural: str, name: str, why: str) -> StatusError:
    return StatusError(409, "Conflict",
                       f'Operation cannot be fulfilled on {_qualified(group, plural)} '
                       f'"{name}": {why}',
                       details=_details(name, group, plural))


MODIFIED_CONFLICT = ("the object has been modified; please apply your changes to the latest "
                     "version and try again")


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> StatusError:
    """422 Invalid with one cause per field, formatted like field.ErrorList."""
    summary = ", ".join(
        f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes
    )
    qualified = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {"name": name, "kind": kind, "causes": causes}
    if group:
        details["group"] = group
    return StatusError(422, "Invalid", f'{qualified} "{name}" is invalid: [{summary}]'
                       if len(causes) > 1 else f'{qualified} "{name}" is invalid: {summary}',
                       details=details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def forbidden(message: str) -> StatusError:
    return StatusError(403, "Forbidden", message)


def method_not_allowed(verb: str) -> StatusError:
    return StatusError(405, "MethodNotAllowed",
                       f"the server does not allow this method on the requested resource "
                       f"({verb})")


def too_large(limit: int) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge",
                       f"Request entity too large: limit is {limit} bytes")


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType",
                       f'the body of the request was in an unknown format - accepted media '
                       f'types include: application/json, application/yaml, '
                       f'application/vnd.kubernetes.protobuf (got "{content_type}")')


def not_acceptable(accept: str) -> StatusError:
    return StatusError(406, "NotAcceptable", f"only the following media types are accepted: "
                       f"application/json, application/yaml (got {accept})")


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def timeout(message: str) -> StatusError:
    return StatusError(504, "Timeout", message)


def field_cause(field: str, message: str, *, reason: str = "FieldValueInvalid") -> dict[str, str]:
    return {"reason": reason, "message": message, "field": field}
