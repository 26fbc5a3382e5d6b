"""Typed errors chosen from HTTP code and Status reason."""

import json

import pytest

from apiclient import errors
from apiclient.errors import error_from_response


def status(code, reason, message="msg"):
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        (400, "BadRequest", errors.BadRequestError),
        (401, "Unauthorized", errors.UnauthorizedError),
        (403, "Forbidden", errors.ForbiddenError),
        (404, "NotFound", errors.NotFoundError),
        (405, "MethodNotAllowed", errors.MethodNotAllowedError),
        (409, "AlreadyExists", errors.AlreadyExistsError),
        (409, "Conflict", errors.ConflictError),
        (410, "Expired", errors.GoneError),
        (410, "Gone", errors.GoneError),
        (413, "RequestEntityTooLarge", errors.RequestEntityTooLargeError),
        (415, "UnsupportedMediaType", errors.UnsupportedMediaTypeError),
        (422, "Invalid", errors.InvalidError),
        (429, "TooManyRequests", errors.TooManyRequestsError),
        (500, "InternalError", errors.InternalError),
        (503, "ServiceUnavailable", errors.ServiceUnavailableError),
        (504, "Timeout", errors.ServerTimeoutError),
        (418, "Teapot", errors.ApiError),
    ],
)
def test_class_by_code_and_reason(code, reason, cls):
    body = status(code, reason, 'pods "x" not found')
    for raw in (body, json.dumps(body).encode(), json.dumps(body)):
        error = error_from_response(code, raw)
        assert type(error) is cls
        assert (error.status, error.reason, error.message) == (code, reason, 'pods "x" not found')
        assert error.body == body
        assert str(error) == f'{code} {reason}: pods "x" not found'


def test_not_json_body_keeps_the_text():
    error = error_from_response(502, b"<html>bad gateway</html>")
    assert type(error) is errors.ApiError
    assert error.message == "<html>bad gateway</html>"


def test_empty_body_gets_a_default_reason_and_message():
    error = error_from_response(404, b"")
    assert isinstance(error, errors.NotFoundError)
    assert error.reason == "NotFound"
    assert "404" in error.message


def test_all_api_errors_share_one_base():
    assert issubclass(errors.ConflictError, errors.ApiError)
    assert not issubclass(errors.TransportError, errors.ApiError)
