"""Turning an HTTP request into (resource, namespace, name, subresource, verb) and back.

This is kube-apiserver's RequestInfo: the path grammar of the Kubernetes REST API
(``/api/v1/namespaces/{ns}/{plural}/{name}/{subresource}`` and the ``/apis/{group}/
{version}`` form) parsed once, so that the CRUD and watch handlers deal only with
meaning. Body decoding lives here too: the size limit, the accepted media types and
the BadRequest messages for malformed JSON/YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from aiohttp import web

from apiserver import status
from apiserver.protobuf import ProtobufError, decode_object
from apiserver.registry import Registry, ResourceType

MAX_BODY_BYTES = 3 * 1024 * 1024

JSON = "application/json"
PROTOBUF = "application/vnd.kubernetes.protobuf"
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


@dataclass(frozen=True, slots=True)
class RequestInfo:
    resource: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    verb: str  # get list watch create update patch delete deletecollection

    @property
    def metric_verb(self) -> str:
        return {"get": "GET", "list": "LIST", "watch": "WATCH", "create": "POST",
                "update": "PUT", "patch": "PATCH", "delete": "DELETE",
                "deletecollection": "DELETE"}[self.verb]


INFO = web.RequestKey("info", RequestInfo)
"""Where the resource handler leaves the parsed request (read by the metrics middleware)."""


def parse(request: web.Request, registry: Registry) -> RequestInfo:
    """Resolve the request path against the registry; 404 for unknown resources."""
    parts = [p for p in request.path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise _path_not_found(request.path)
    if not rest:
        raise _path_not_found(request.path)

    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    plural, name = rest[0], rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if len(rest) > 3:
        raise _path_not_found(request.path)
    resource = registry.lookup(group, version, plural)
    if resource is None or (namespace is not None and not resource.namespaced):
        raise _path_not_found(request.path)
    if subresource is not None and subresource not in resource.subresources:
        raise _path_not_found(request.path)
    return RequestInfo(resource, namespace, name, subresource,
                       _verb(request, has_name=name is not None))


def _path_not_found(path: str) -> status.StatusError:
    return status.StatusError(404, "NotFound", "the server could not find the requested resource",
                              details={"causes": [{"reason": "UnexpectedServerResponse",
                                                   "message": f"404 page not found: {path}"}]})


def _verb(request: web.Request, *, has_name: bool) -> str:
    method = request.method
    if method == "GET":
        if is_true(request.query.get("watch")):
            return "watch"
        return "get" if has_name else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if has_name else "deletecollection"
    raise status.method_not_allowed(method)


def is_true(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise status.bad_request(f'invalid value for query parameter {name}: "{raw}" '
                                 f"is not an integer") from None


async def read_body(request: web.Request) -> bytes:
    """The raw body, refusing more than MAX_BODY_BYTES before reading it all."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise status.too_large(MAX_BODY_BYTES)
    body = await request.content.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise status.too_large(MAX_BODY_BYTES)
    return body


def media_type(request: web.Request) -> str:
    return (request.headers.get("Content-Type") or JSON).split(";", 1)[0].strip().lower()


def decode(body: bytes, content_type: str) -> Any:
    """JSON, YAML or Kubernetes protobuf into Python values, with kube-apiserver-like
    BadRequest messages."""
    if not body.strip():
        raise status.bad_request("the request body is empty; an object is required")
    if content_type in (JSON, "*/*", "") or content_type.endswith("+json"):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise status.bad_request(f"the request body is not valid JSON: {exc}") from None
    if content_type == PROTOBUF:
        try:
            return decode_object(body)
        except ProtobufError as exc:
            raise status.bad_request(f"the request body is not a valid Kubernetes protobuf "
                                     f"object: {exc}") from None
    if content_type in ("application/yaml", "application/x-yaml", "text/yaml") \
            or content_type.endswith("+yaml"):
        try:
            return yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise status.bad_request(
                f"the request body is not valid YAML: {' '.join(str(exc).split())}") from None
    raise status.unsupported_media_type(content_type)


async def read_patch(request: web.Request) -> tuple[str, Any]:
    """(patch type, decoded patch) of a PATCH body, by its Content-Type."""
    content_type = media_type(request)
    patch_type = PATCH_TYPES.get(content_type)
    if patch_type is None:
        raise status.unsupported_media_type(content_type)
    if patch_type == "apply":
        raise status.StatusError(415, "UnsupportedMediaType",
                                 "server-side apply is not supported yet; use "
                                 "client-side `kubectl apply` (the default)")
    return patch_type, decode(await read_body(request), content_type)


async def read_object(request: web.Request) -> dict[str, Any]:
    """A request body that must be one object (create, update)."""
    content_type = media_type(request)
    if content_type not in (JSON, PROTOBUF, "application/yaml", "application/x-yaml",
                            "text/yaml", "*/*"):
        raise status.unsupported_media_type(content_type)
    value = decode(await read_body(request), content_type)
    if not isinstance(value, dict):
        raise status.bad_request(
            f"the request body must be a JSON object, not {type(value).__name__}")
    return value


def json_response(value: Any, *, code: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    """``value`` as JSON; a ``Status`` is written byte-compatible with kube-apiserver."""
    body = status.encode_status(value) if status.is_status(value) else orjson.dumps(value)
    return web.Response(body=body, status=code, content_type=JSON, headers=headers)


def raw_json_response(body: bytes, *, code: int = 200) -> web.Response:
    return web.Response(body=body, status=code, content_type=JSON)
