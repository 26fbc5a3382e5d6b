"""The OpenAPI documents kubectl reads: swagger 2.0 at /openapi/v2, OpenAPI 3 per group/version.

kubectl uses them for three things, and each shapes what is here:
- server-side field validation: kubectl looks, in the v3 document of the object's
  group/version, for a PATCH operation whose `x-kubernetes-group-version-kind` is the
  object's GVK and enables validation only if that operation lists a `fieldValidation`
  parameter (cli-runtime query_param_verifier_v3.go). So every PATCH operation carries it
  among its own parameters, not the path's.
- client-side apply: the strategic merge patch is computed from the schema extensions
  (`x-kubernetes-patch-merge-key`, `x-kubernetes-patch-strategy`) of the schema whose
  `x-kubernetes-group-version-kind` matches.
- `kubectl explain`: walks the same schemas (v3 by default, v2 with
  `--output=plaintext-openapiv2`).

Documents are built once, lazily, and cached as bytes; names follow Kubernetes
(operation ids like `patchCoreV1NamespacedPod`, schemas like `io.k8s.api.core.v1.Pod`).
"""

from __future__ import annotations

import copy
import functools
import hashlib
from typing import Any

import orjson

from apiserver.openapi.protobuf_v2 import encode_document
from apiserver.openapi.resources import RESOURCES, Resource, Subresource
from apiserver.openapi.schema import REF_PREFIX, definition_name_for, definitions

KUBERNETES_VERSION = "v1.37.0"
# The media type client-go sends in Accept for /openapi/v2 (answer with openapi_v2_protobuf).
OPENAPI_V2_PROTOBUF_TYPE = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
V3_REF_PREFIX = "#/components/schemas/"
JSON_TYPES = ["application/json", "application/yaml"]
WATCH_TYPES = ["application/json;stream=watch"]
PATCH_TYPES = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
]
STATUS = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
WATCH_EVENT = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent"
PATCH = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"

# (name, JSON type) of the query parameters per kind of operation, as Kubernetes has them.
WRITE_PARAMETERS = [("dryRun", "string"), ("fieldManager", "string"), ("fieldValidation", "string")]
PATCH_PARAMETERS = [*WRITE_PARAMETERS, ("force", "boolean")]
DELETE_PARAMETERS = [
    ("dryRun", "string"),
    ("gracePeriodSeconds", "integer"),
    ("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean"),
    ("orphanDependents", "boolean"),
    ("propagationPolicy", "string"),
]
LIST_PARAMETERS = [
    ("allowWatchBookmarks", "boolean"),
    ("continue", "string"),
    ("fieldSelector", "string"),
    ("labelSelector", "string"),
    ("limit", "integer"),
    ("resourceVersion", "string"),
    ("resourceVersionMatch", "string"),
    ("sendInitialEvents", "boolean"),
    ("timeoutSeconds", "integer"),
    ("watch", "boolean"),
]
LOG_PARAMETERS = [
    ("container", "string"),
    ("follow", "boolean"),
    ("insecureSkipTLSVerifyBackend", "boolean"),
    ("limitBytes", "integer"),
    ("previous", "boolean"),
    ("sinceSeconds", "integer"),
    ("stream", "string"),
    ("tailLines", "integer"),
    ("timestamps", "boolean"),
]


class _Flavor:
    """How one OpenAPI version spells refs, parameters, bodies and responses."""

    def __init__(self, *, v3: bool) -> None:
        self.v3 = v3

    def ref(self, definition: str) -> dict[str, str]:
        return {"$ref": (V3_REF_PREFIX if self.v3 else REF_PREFIX) + definition}

    def parameter(self, name: str, where: str, json_type: str) -> dict[str, Any]:
        parameter: dict[str, Any] = {"name": name, "in": where, "uniqueItems": True}
        if where == "path":
            parameter["required"] = True
        if self.v3:
            parameter["schema"] = {"type": json_type, "uniqueItems": True}
            del parameter["uniqueItems"]
        else:
            parameter["type"] = json_type
        return parameter

    def body(self, definition: str, content_types: list[str], *, required: bool) -> dict:
        """A v3 requestBody, or a v2 `in: body` parameter (the caller places it)."""
        if self.v3:
            schema = self.ref(definition)
            return {"content": {t: {"schema": schema} for t in content_types}, "required": required}
        return {"name": "body", "in": "body", "required": required, "schema": self.ref(definition)}

    def response(self, schema: dict[str, Any], content_types: list[str]) -> dict[str, Any]:
        if self.v3:
            return {"description": "OK", "content": {t: {"schema": schema} for t in content_types}}
        return {"description": "OK", "schema": schema}


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def _operation_prefix(group: str, version: str) -> str:
    short_group = group.split(".")[0] if group else "core"
    return short_group.capitalize() + version.capitalize()


def _tag(group: str, version: str) -> str:
    return f"{group.split('.')[0] if group else 'core'}_{version}"


def _operation(
    flavor: _Flavor,
    *,
    operation_id: str,
    tag: str,
    action: str,
    gvk: dict[str, str],
    parameters: list[tuple[str, str]],
    responses: dict[str, dict[str, Any]],
    body: dict[str, Any] | None = None,
    consumes: list[str] | None = None,
    produces: list[str],
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [tag],
        "parameters": [flavor.parameter(name, "query", kind) for name, kind in parameters],
        "responses": {**responses, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    if body is not None:
        if flavor.v3:
            operation["requestBody"] = body
        else:
            operation["parameters"].insert(0, body)
    if not flavor.v3:
        operation["consumes"] = consumes or ["*/*"]
        operation["produces"] = produces
        operation["schemes"] = ["https"]
    return operation


def _path_parameters(flavor: _Flavor, names: list[str]) -> list[dict[str, Any]]:
    return [
        *(flavor.parameter(name, "path", "string") for name in names),
        flavor.parameter("pretty", "query", "string"),
    ]


def _resource_paths(flavor: _Flavor, resource: Resource) -> dict[str, dict[str, Any]]:
    group, version, kind = resource.group, resource.version, resource.kind
    definition = definition_name_for(f"{group}/{version}" if group else version, kind)
    list_definition = definition_name_for(f"{group}/{version}" if group else version, kind + "List")
    prefix = _operation_prefix(group, version)
    scope = "Namespaced" if resource.namespaced else ""
    tag = _tag(group, version)
    gvk = _gvk(group, version, kind)
    root = f"/{resource.group_version_path}"
    namespace_part = "/namespaces/{namespace}" if resource.namespaced else ""
    collection = f"{root}{namespace_part}/{resource.plural}"
    item = f"{collection}/{{name}}"
    scope_names = ["namespace"] if resource.namespaced else []
    ok = flavor.response(flavor.ref(definition), JSON_TYPES)
    # A create-only kind (TokenReview) has no list kind; its list operations are dropped.
    ok_list = flavor.response(flavor.ref(list_definition or definition), JSON_TYPES)
    ok_status = flavor.response(flavor.ref(STATUS), JSON_TYPES)
    ok_watch = flavor.response(flavor.ref(WATCH_EVENT), WATCH_TYPES)

    def op(verb: str, action: str, name_suffix: str = "", **kwargs: Any) -> dict[str, Any]:
        return _operation(
            flavor,
            operation_id=f"{verb}{prefix}{name_suffix or scope + kind}",
            tag=tag,
            action=action,
            gvk=kwargs.pop("gvk", gvk),
            produces=kwargs.pop("produces", JSON_TYPES),
            **kwargs,
        )

    paths: dict[str, dict[str, Any]] = {
        collection: {
            "get": op("list", "list", parameters=LIST_PARAMETERS, responses={"200": ok_list}),
            "post": op(
                "create",
                "post",
                parameters=WRITE_PARAMETERS,
                body=flavor.body(definition, ["*/*"], required=True),
                responses={"200": ok, "201": ok, "202": ok},
            ),
            "delete": op(
                "delete",
                "deletecollection",
                f"Collection{scope}{kind}",
                parameters=[*DELETE_PARAMETERS, *LIST_PARAMETERS],
                body=flavor.body(DELETE_OPTIONS, ["*/*"], required=False),
                responses={"200": ok_status},
            ),
            "parameters": _path_parameters(flavor, scope_names),
        },
        item: {
            "get": op("read", "get", parameters=[], responses={"200": ok}),
            "put": op(
                "replace",
                "put",
                parameters=WRITE_PARAMETERS,
                body=flavor.body(definition, ["*/*"], required=True),
                responses={"200": ok, "201": ok},
            ),
            "patch": op(
                "patch",
                "patch",
                parameters=PATCH_PARAMETERS,
                body=flavor.body(PATCH, PATCH_TYPES, required=True),
                consumes=PATCH_TYPES,
                responses={"200": ok, "201": ok},
            ),
            "delete": op(
                "delete",
                "delete",
                parameters=DELETE_PARAMETERS,
                body=flavor.body(DELETE_OPTIONS, ["*/*"], required=False),
                responses={"200": ok, "202": ok},
            ),
            "parameters": _path_parameters(flavor, [*scope_names, "name"]),
        },
        f"{root}/watch{namespace_part}/{resource.plural}": {
            "get": op(
                "watch",
                "watchlist",
                f"{scope}{kind}List",
                parameters=LIST_PARAMETERS,
                responses={"200": ok_watch},
                produces=WATCH_TYPES,
            ),
            "parameters": _path_parameters(flavor, scope_names),
        },
        f"{root}/watch{namespace_part}/{resource.plural}/{{name}}": {
            "get": op(
                "watch",
                "watch",
                parameters=LIST_PARAMETERS,
                responses={"200": ok_watch},
                produces=WATCH_TYPES,
            ),
            "parameters": _path_parameters(flavor, [*scope_names, "name"]),
        },
    }
    if resource.namespaced:
        paths[f"{root}/{resource.plural}"] = {
            "get": op(
                "list",
                "list",
                f"{kind}ForAllNamespaces",
                parameters=LIST_PARAMETERS,
                responses={"200": ok_list},
            ),
            "parameters": _path_parameters(flavor, []),
        }
    paths = _only_served_verbs(paths, resource.verbs)
    for subresource in resource.subresources:
        paths[f"{item}/{subresource.name}"] = _subresource_path(
            flavor, subresource, op=op, scope_kind=scope + kind, names=[*scope_names, "name"]
        )
    return paths


# x-kubernetes-action -> the discovery verb it needs.
_ACTION_VERBS = {"list": "list", "post": "create", "deletecollection": "deletecollection",
                 "get": "get", "put": "update", "patch": "patch", "delete": "delete",
                 "watchlist": "watch", "watch": "watch"}


def _only_served_verbs(paths: dict[str, dict[str, Any]], verbs: tuple[str, ...]
                       ) -> dict[str, dict[str, Any]]:
    """Drop the operations of verbs the resource does not serve (TokenReview: create
    only), and the paths left without any."""
    kept: dict[str, dict[str, Any]] = {}
    for path, item in paths.items():
        operations = {method: operation for method, operation in item.items()
                      if method == "parameters"
                      or _ACTION_VERBS[operation["x-kubernetes-action"]] in verbs}
        if len(operations) > 1:
            kept[path] = operations
    return kept


def _subresource_path(
    flavor: _Flavor, subresource: Subresource, *, op: Any, scope_kind: str, names: list[str]
) -> dict[str, Any]:
    api_version = (
        f"{subresource.group}/{subresource.version}" if subresource.group else subresource.version
    )
    definition = definition_name_for(api_version, subresource.kind)
    gvk = _gvk(subresource.group, subresource.version, subresource.kind)
    suffix = scope_kind + subresource.name.capitalize()
    ok = flavor.response(flavor.ref(definition), JSON_TYPES)
    path: dict[str, Any] = {"parameters": _path_parameters(flavor, names)}
    if subresource.name == "log":
        text = {"type": "string"}
        path["get"] = op(
            "read",
            "get",
            suffix,
            gvk=gvk,
            parameters=LOG_PARAMETERS,
            responses={"200": flavor.response(text, ["text/plain"])},
            produces=["text/plain"],
        )
        return path
    for verb in subresource.verbs:
        if verb == "get":
            path["get"] = op("read", "get", suffix, gvk=gvk, parameters=[], responses={"200": ok})
        elif verb == "put":
            path["put"] = op(
                "replace",
                "put",
                suffix,
                gvk=gvk,
                parameters=WRITE_PARAMETERS,
                body=flavor.body(definition, ["*/*"], required=True),
                responses={"200": ok, "201": ok},
            )
        elif verb == "patch":
            path["patch"] = op(
                "patch",
                "patch",
                suffix,
                gvk=gvk,
                parameters=PATCH_PARAMETERS,
                body=flavor.body(PATCH, PATCH_TYPES, required=True),
                consumes=PATCH_TYPES,
                responses={"200": ok, "201": ok},
            )
        elif verb == "post":
            path["post"] = op(
                "create",
                "post",
                suffix,
                gvk=gvk,
                parameters=WRITE_PARAMETERS,
                body=flavor.body(definition, ["*/*"], required=True),
                responses={"200": ok, "201": ok, "202": ok},
            )
    return path


def _referenced_definitions(node: Any, prefix: str) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            ref = current.get("$ref")
            if isinstance(ref, str) and ref.startswith(prefix):
                found.add(ref[len(prefix) :])
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return found


def _v3_schema(node: Any) -> Any:
    """A definition in OpenAPI 3 form: refs into components, and a ref with extensions beside
    it wrapped in `allOf` (siblings of `$ref` are ignored in 3.0), as Kubernetes does."""
    if isinstance(node, list):
        return [_v3_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = {"$ref": V3_REF_PREFIX + node["$ref"][len(REF_PREFIX) :]}
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        return {"allOf": [ref], **siblings} if siblings else ref
    return {key: _v3_schema(value) for key, value in node.items()}


def _definition_closure(names: set[str]) -> list[str]:
    """The named definitions plus everything they reference, sorted."""
    kept: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in kept:
            kept.add(name)
            pending.extend(_referenced_definitions(definitions()[name], REF_PREFIX) - kept)
    return sorted(kept)


def _info() -> dict[str, str]:
    return {"title": "Kubernetes", "version": KUBERNETES_VERSION}


@functools.cache
def openapi_v2() -> bytes:
    """GET /openapi/v2 as JSON (what curl and the Python client read)."""
    return orjson.dumps(_v2_document())


@functools.cache
def openapi_v2_protobuf() -> bytes:
    """GET /openapi/v2 for `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`,
    the only encoding client-go (kubectl) decodes for v2."""
    return encode_document(_v2_document())


@functools.cache
def _v2_document() -> dict[str, Any]:
    flavor = _Flavor(v3=False)
    paths: dict[str, Any] = {}
    for resource in RESOURCES:
        paths.update(_resource_paths(flavor, resource))
    document = {
        "swagger": "2.0",
        "info": _info(),
        "paths": dict(sorted(paths.items())),
        "definitions": definitions(),
        "securityDefinitions": {
            "BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}
        },
        "security": [{"BearerToken": []}],
    }
    return document


@functools.cache
def _v3_documents() -> dict[str, bytes]:
    flavor = _Flavor(v3=True)
    paths_by_group_version: dict[str, dict[str, Any]] = {}
    for resource in RESOURCES:
        paths = paths_by_group_version.setdefault(resource.group_version_path, {})
        paths.update(_resource_paths(flavor, resource))
    documents: dict[str, bytes] = {}
    for group_version_path, paths in paths_by_group_version.items():
        used = _definition_closure(_referenced_definitions(paths, V3_REF_PREFIX))
        schemas = {name: _v3_schema(definitions()[name]) for name in used}
        document = {
            "openapi": "3.0.0",
            "info": _info(),
            "paths": dict(sorted(paths.items())),
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}
                },
            },
            "security": [{"BearerToken": []}],
        }
        documents[group_version_path] = orjson.dumps(document)
    return documents


def openapi_v3_document(group_version_path: str) -> bytes | None:
    """The v3 document of "api/v1", "apis/apps/v1", ...; None for an unknown group/version."""
    return _v3_documents().get(group_version_path.strip("/"))


@functools.cache
def _v3_index() -> dict[str, Any]:
    paths = {
        group_version_path: {
            "serverRelativeURL": (
                f"/openapi/v3/{group_version_path}"
                f"?hash={hashlib.sha512(document).hexdigest().upper()}"
            )
        }
        for group_version_path, document in sorted(_v3_documents().items())
    }
    return {"paths": paths}


def openapi_v3_index() -> dict:
    """GET /openapi/v3: each group/version document with a content hash clients cache by."""
    return copy.deepcopy(_v3_index())
