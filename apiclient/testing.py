"""An in-memory Kubernetes API server for fast unit tests of API clients and informers.

It serves `ApiClient` and `Informer` over real HTTP on 127.0.0.1 in milliseconds, and it
offers what a real apiserver cannot: failure switches (force 410 Gone, drop every open
watch, end watches at once, fail the next requests), BOOKMARKs on demand, direct writes
(`seed`, `remove`, `compact`) and a record of every request. It is for unit tests only
(STYLE.md 7): a test of server semantics, or of a component end to end, runs against the
real apiserver (`tests/support/apiserver.py`).

What it serves behaves like `keelson apiserver`, and `tests/e2e/apiserver/test_fake_parity.py`
runs one behaviour suite against both to keep it so: create (generateName, AlreadyExists,
server-owned metadata, generation, the initial status of kinds with /status), get, list
(label and field selectors with the real per-kind field table, limit/continue,
remainingItemCount), update and merge / JSON patch (stale resourceVersion is a Conflict,
no-op writes are not written, /status writes only status and the main resource never
does), delete (preconditions, graceful deletion of bound pods, finalizers and
propagationPolicy), watch (replay from a resourceVersion, selector transitions as
ADDED/DELETED, 410 Gone, BOOKMARKs) and the `Status` bodies of every error.

Deliberately not emulated (test those against the real server): per-kind defaulting and
validation beyond metadata.name, authentication other than one bearer token,
namespaces as containers (an object may live in a namespace that does not exist, and
deleting a Namespace deletes only it), strategic merge patch (answered 415), subresources
other than /status, Service IP allocation, dryRun, Table and protobuf output.
One known difference is kept because a node agent test relies on it: a deletionTimestamp
written by a client is stored (the real server ignores it), which is how
tests/e2e/nodeagent/test_agent_docker.py marks a pod as being deleted.
Only the resources in `apiclient.resources.ALL_RESOURCES` are served.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonpatch
import orjson
from aiohttp import web

from .kubeconfig import ClusterConfig
from .meta import format_time, object_key, utc_now
from .pods import is_terminal, qos_class
from .resources import (
    ALL_RESOURCES,
    DEPLOYMENTS,
    ENDPOINTS,
    EVENTS,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    SECRETS,
    SERVICES,
    Resource,
)
from .selectors import SelectorError, parse_field_selector, parse_label_selector

__all__ = ["FakeApiServer", "RecordedRequest"]

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]


@dataclass(frozen=True)
class _Kind:
    """What one kind does differently, as the real registry (apiserver/registry.py) says;
    the parity test compares this table with it."""

    fields: frozenset[str] = frozenset()  # selectable besides metadata.name/.namespace
    has_status: bool = False  # a /status subresource: only it writes status
    initial_status: Callable[[Obj], Obj] | None = None  # None: a create keeps its status
    create_on_update: bool = False  # a PUT to a missing object creates it


def _fixed(status: Obj) -> Callable[[Obj], Obj]:
    return lambda _obj: copy.deepcopy(status)


_SPECIAL_KINDS: dict[Resource, _Kind] = {
    NAMESPACES: _Kind(frozenset({"status.phase"}), True, _fixed({"phase": "Active"})),
    NODES: _Kind(frozenset({"spec.unschedulable"}), True, None),
    PODS: _Kind(
        frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                   "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                   "status.podIP", "status.nominatedNodeName"}),
        True,
        lambda pod: {"phase": "Pending", "qosClass": qos_class(pod.get("spec") or {})},
    ),
    SERVICES: _Kind(frozenset({"spec.clusterIP", "spec.type"}), True,
                    _fixed({"loadBalancer": {}})),
    ENDPOINTS: _Kind(create_on_update=True),
    EVENTS: _Kind(
        frozenset({"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                   "involvedObject.uid", "involvedObject.fieldPath", "reason", "type",
                   "source"}),
        create_on_update=True,
    ),
    SECRETS: _Kind(frozenset({"type"})),
    DEPLOYMENTS: _Kind(has_status=True, initial_status=_fixed({})),
    REPLICASETS: _Kind(frozenset({"status.replicas"}), True, _fixed({"replicas": 0})),
}
KINDS: dict[Resource, _Kind] = {res: _SPECIAL_KINDS.get(res, _Kind()) for res in ALL_RESOURCES}
_FIELD_PATHS = {"source": "source.component"}  # selectable fields not named by their path
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's SimpleNameGenerator alphabet
_DEFAULT_POD_GRACE_SECONDS = 30
_PROPAGATION_FINALIZERS = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}
_MODIFIED_CONFLICT = ("the object has been modified; please apply your changes to the latest "
                      "version and try again")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]


@dataclass
class _Event:
    resource_version: int
    type: str
    resource: Resource
    object: Obj
    previous: Obj | None  # the state a MODIFIED replaced (for selector transitions)


@dataclass
class _Watcher:
    resource: Resource
    predicate: Predicate
    query: Mapping[str, str]
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    request: web.Request | None = None


class _Failure(Exception):
    """A request answered with a Kubernetes ``Status`` (apiserver/status.py's shapes)."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None):
        super().__init__(message)
        self.body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                          "status": "Failure", "message": message, "reason": reason,
                          "code": code}
        if details:
            self.body["details"] = details

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.body["code"])


def _qualified(res: Resource) -> str:
    return f"{res.plural}.{res.group}" if res.group else res.plural


def _details(res: Resource, name: str) -> Obj:
    details: Obj = {"name": name, "kind": res.plural}
    if res.group:
        details["group"] = res.group
    return details


def _not_found(res: Resource, name: str) -> _Failure:
    return _Failure(404, "NotFound", f'{_qualified(res)} "{name}" not found',
                    _details(res, name))


def _conflict(res: Resource, name: str, why: str = _MODIFIED_CONFLICT) -> _Failure:
    return _Failure(409, "Conflict",
                    f'Operation cannot be fulfilled on {_qualified(res)} "{name}": {why}',
                    _details(res, name))


def _bad_request(message: str) -> _Failure:
    return _Failure(400, "BadRequest", message)


def _invalid(res: Resource, name: str, field_path: str, message: str, reason: str) -> _Failure:
    kind = f"{res.kind}.{res.group}" if res.group else res.kind
    details: Obj = {"name": name, "kind": res.kind,
                    "causes": [{"reason": reason, "message": message, "field": field_path}]}
    if res.group:
        details["group"] = res.group
    return _Failure(422, "Invalid", f'{kind} "{name}" is invalid: {field_path}: {message}',
                    details)


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _field_value(obj: Mapping, dotted: str) -> str:
    value: Any = obj
    for part in _FIELD_PATHS.get(dotted, dotted).split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _spec_of(obj: Obj) -> Obj:
    """Everything a generation bump looks at: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


def _in(seconds: int) -> str:
    return format_time(datetime.now(UTC) + timedelta(seconds=seconds))


class FakeApiServer:
    """Use as `async with FakeApiServer() as server: client = ApiClient(server.config())`."""

    def __init__(self, *, token: str | None = None):
        self.token = token
        self.requests: list[RecordedRequest] = []
        self.objects: dict[tuple[Resource, str], Obj] = {}
        self.resource_version = 100
        self.events: list[_Event] = []
        self.oldest_watchable = 0  # watches from an older resourceVersion get 410
        self.gone_next_watches = 0  # the next N watches answer with an ERROR 410 event
        self.fail_next_requests = 0  # the next N requests answer 500
        self.close_watches_at_once = False  # end each watch stream without events
        self._watchers: list[_Watcher] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeApiServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = site._server.sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()

    def config(self, **overrides: Any) -> ClusterConfig:
        return ClusterConfig(server=self.url, token=self.token, **overrides)

    # ------------------------------------------------------------------ test switches

    def seed(self, res: Resource, obj: Obj) -> Obj:
        """Store an object as given (as if someone else wrote it), notifying watchers:
        ADDED, or MODIFIED if it exists. Only a missing uid, creationTimestamp, kind and
        apiVersion are filled in; no validation, no status reset."""
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", utc_now())
        obj.setdefault("kind", res.kind)
        obj.setdefault("apiVersion", res.api_version)
        exists = (res, object_key(obj)) in self.objects
        return self._write(res, "MODIFIED" if exists else "ADDED", obj)

    def remove(self, res: Resource, key: str) -> Obj:
        """Delete an object at once (no grace, no finalizers), notifying watchers."""
        obj = self.objects.pop((res, key))
        self.resource_version += 1
        obj = {
            **obj,
            "metadata": {**obj["metadata"], "resourceVersion": str(self.resource_version)},
        }
        self._publish(_Event(self.resource_version, "DELETED", res, obj, None))
        return obj

    def compact(self) -> None:
        """Forget history: a watch from any resourceVersion seen so far, or a continue
        token handed out so far, now gets 410 Gone."""
        self.resource_version += 1  # as if written elsewhere; new lists get a watchable RV
        self.oldest_watchable = self.resource_version
        self.events.clear()

    def send_bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion to every watcher that allows it."""
        for watcher in self._watchers:
            if watcher.query.get("allowWatchBookmarks") == "true":
                bookmark = {
                    "kind": watcher.resource.kind,
                    "apiVersion": watcher.resource.api_version,
                    "metadata": {"resourceVersion": str(self.resource_version)},
                }
                watcher.queue.put_nowait(("BOOKMARK", bookmark))

    def drop_watches(self) -> None:
        """Abort every open watch connection (a network failure, not a clean end)."""
        for watcher in list(self._watchers):
            if watcher.request is not None and watcher.request.transport is not None:
                watcher.request.transport.abort()
            watcher.queue.put_nowait(None)

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    def watch_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.query.get("watch") in ("true", "1")]

    # ------------------------------------------------------------------ storage

    def _write(self, res: Resource, event_type: str, obj: Obj) -> Obj:
        key = (res, object_key(obj))
        previous = self.objects.get(key)
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self.objects[key] = obj
        self._publish(_Event(self.resource_version, event_type, res, copy.deepcopy(obj),
                             copy.deepcopy(previous) if previous is not None else None))
        return obj

    def _publish(self, event: _Event) -> None:
        self.events.append(event)
        for watcher in self._watchers:
            if watcher.resource == event.resource:
                event_type = _seen_as(event, watcher.predicate)
                if event_type is not None:
                    watcher.queue.put_nowait((event_type, event.object))

    # ------------------------------------------------------------------ HTTP

    def _route(self, path: str) -> tuple[Resource, str | None, str | None, str | None] | None:
        parts = [part for part in path.split("/") if part]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        served = {r.plural: r for r in ALL_RESOURCES if (r.group, r.version) == (group, version)}
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in served:
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3 or rest[0] not in served:
            return None
        res = served[rest[0]]
        if namespace and not res.namespaced:
            return None
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        return res, namespace, name, subresource

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append(RecordedRequest(request.method, request.path, query))
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return _Failure(401, "Unauthorized", "Unauthorized").response()
        if self.fail_next_requests > 0:
            self.fail_next_requests -= 1
            return _Failure(500, "InternalError", "injected failure").response()
        try:
            route = self._route(request.path)
            if route is None:
                raise _Failure(404, "NotFound", "the server could not find the requested resource")
            return await self._serve(request, query, *route)
        except _Failure as failure:
            return failure.response()

    async def _serve(
        self, request: web.Request, query: Mapping[str, str], res: Resource,
        namespace: str | None, name: str | None, subresource: str | None,
    ) -> web.StreamResponse:
        method = request.method
        if subresource is not None and (subresource != "status" or not KINDS[res].has_status):
            raise _Failure(404, "NotFound", "the server could not find the requested resource")
        if name is None:
            if method == "GET" and query.get("watch") in ("true", "1"):
                return await self._watch(request, res, namespace, query)
            if method == "GET":
                return self._list(res, namespace, query)
            if method == "POST":
                return self._create(res, namespace, await _body(request))
        else:
            key = f"{namespace}/{name}" if res.namespaced else name
            current = self.objects.get((res, key))
            if method == "GET":
                if current is None:
                    raise _not_found(res, name)
                return web.json_response(current)
            if method == "PUT":
                return self._replace(res, namespace, name, current, await _body(request),
                                     subresource)
            if method == "PATCH":
                if current is None:
                    raise _not_found(res, name)
                return self._patch(res, current, request.content_type, await _body(request),
                                   subresource)
            if method == "DELETE" and subresource is None:
                options = _delete_options(query, await _body(request))
                if current is None:
                    raise _not_found(res, name)
                return self._delete(res, current, options)
        raise _Failure(405, "MethodNotAllowed", "the server does not allow this method on the "
                       f"requested resource ({method})")

    # ------------------------------------------------------------------ reads

    def _predicate(self, res: Resource, namespace: str | None,
                   query: Mapping[str, str]) -> tuple[Predicate, bool]:
        """What a list or watch selects, and whether it selects by anything but namespace."""
        try:
            labels = parse_label_selector(query.get("labelSelector", ""))
            fields = parse_field_selector(query.get("fieldSelector", ""))
        except SelectorError as error:
            raise _bad_request(f"unable to parse requirement: {error}") from None
        supported = {"metadata.name", *KINDS[res].fields}
        if res.namespaced:
            supported.add("metadata.namespace")
        for name in fields.fields:
            if name not in supported:
                raise _bad_request(f"field label not supported: {name}")

        def predicate(obj: Obj) -> bool:
            metadata = obj.get("metadata") or {}
            if namespace and metadata.get("namespace") != namespace:
                return False
            if not labels.matches(metadata.get("labels")):
                return False
            return fields.matches({name: _field_value(obj, name) for name in fields.fields})

        return predicate, not (labels.empty and fields.empty)

    def _list(self, res: Resource, namespace: str | None, query: Mapping[str, str]) -> web.Response:
        predicate, selective = self._predicate(res, namespace, query)
        matching = sorted(
            ((key, obj) for (r, key), obj in self.objects.items() if r == res and predicate(obj)),
            key=lambda item: item[0],
        )
        list_rv = self.resource_version
        if query.get("continue"):
            try:
                token = orjson.loads(base64.urlsafe_b64decode(query["continue"].encode()))
                start_after, list_rv = str(token["start"]), int(token["rv"])
            except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                raise _bad_request("continue key is not valid: the continue token is "
                                   "malformed") from None
            if list_rv < self.oldest_watchable:
                raise _Failure(410, "Expired", "the continue token has expired")
            matching = [item for item in matching if item[0] > start_after]
        limit = _int_param(query, "limit")
        page = matching[:limit] if limit > 0 else matching
        metadata: Obj = {"resourceVersion": str(list_rv)}
        if 0 < limit < len(matching):
            token = {"rv": list_rv, "start": page[-1][0]}
            metadata["continue"] = base64.urlsafe_b64encode(orjson.dumps(token)).decode()
            if not selective:  # Kubernetes counts the rest only without selectors
                metadata["remainingItemCount"] = len(matching) - limit
        body = {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": metadata,
                "items": [obj for _key, obj in page]}
        return web.json_response(body)

    async def _watch(
        self, request: web.Request, res: Resource, namespace: str | None, query: Mapping[str, str]
    ) -> web.StreamResponse:
        predicate, _ = self._predicate(res, namespace, query)
        start_rv = _int_param(query, "resourceVersion")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if self.close_watches_at_once:
            await response.write_eof()
            return response
        if self.gone_next_watches > 0 or (start_rv and start_rv < self.oldest_watchable):
            self.gone_next_watches = max(0, self.gone_next_watches - 1)
            gone = _Failure(410, "Expired", f"too old resource version: {start_rv} "
                            f"({self.oldest_watchable})").body
            await response.write(orjson.dumps({"type": "ERROR", "object": gone}) + b"\n")
            await response.write_eof()
            return response
        watcher = _Watcher(res, predicate, query, request=request)
        if start_rv:
            for event in self.events:
                if event.resource == res and event.resource_version > start_rv:
                    event_type = _seen_as(event, predicate)
                    if event_type is not None:
                        watcher.queue.put_nowait((event_type, event.object))
        else:
            for (r, _), obj in sorted(self.objects.items(), key=lambda item: item[0][1]):
                if r == res and predicate(obj):
                    watcher.queue.put_nowait(("ADDED", obj))
        self._watchers.append(watcher)
        timeout = float(query.get("timeoutSeconds") or 3600)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    item = await watcher.queue.get()
                    if item is None:
                        break
                    event_type, obj = item
                    await response.write(orjson.dumps({"type": event_type, "object": obj}) + b"\n")
        except (TimeoutError, ConnectionResetError):
            pass
        finally:
            self._watchers.remove(watcher)
        if request.transport is not None and not request.transport.is_closing():
            await response.write_eof()
        return response

    # ------------------------------------------------------------------ writes

    def _create(self, res: Resource, namespace: str | None, body: Any) -> web.Response:
        obj = _object_body(res, body)
        metadata = obj.setdefault("metadata", {})
        if res.namespaced:
            if namespace and metadata.get("namespace") and metadata["namespace"] != namespace:
                raise _bad_request("the namespace of the provided object does not match the "
                                   "namespace sent on the request")
            metadata["namespace"] = metadata.get("namespace") or namespace
            if not metadata["namespace"]:
                raise _bad_request("an empty namespace may not be set during creation")
        else:
            metadata.pop("namespace", None)
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = str(metadata["generateName"]) + "".join(
                secrets.choice(_NAME_CHARS) for _ in range(5))
        if metadata.get("resourceVersion"):
            raise _bad_request("resourceVersion should not be set on objects to be created")
        if not metadata.get("name"):
            raise _invalid(res, "", "metadata.name",
                           "Required value: name or generateName is required",
                           "FieldValueRequired")
        if (res, object_key(obj)) in self.objects:
            raise _Failure(409, "AlreadyExists",
                           f'{_qualified(res)} "{metadata["name"]}" already exists',
                           _details(res, metadata["name"]))
        kind = KINDS[res]
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = utc_now()
        for server_owned in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink",
                             "managedFields"):
            metadata.pop(server_owned, None)
        if kind.has_status or "spec" in obj:
            metadata["generation"] = 1
        if kind.initial_status is not None:
            obj["status"] = kind.initial_status(obj)
        return web.json_response(self._write(res, "ADDED", obj), status=201)

    def _replace(self, res: Resource, namespace: str | None, name: str, current: Obj | None,
                 body: Any, subresource: str | None) -> web.Response:
        obj = _object_body(res, body)
        metadata = obj.setdefault("metadata", {})
        if metadata.get("name") and metadata["name"] != name:
            raise _bad_request(f"the name of the object ({metadata['name']}) does not match "
                               f"the name on the URL ({name})")
        if res.namespaced and metadata.get("namespace") and metadata["namespace"] != namespace:
            raise _bad_request("the namespace of the provided object does not match the "
                               "namespace sent on the request")
        if current is None:
            if KINDS[res].create_on_update and subresource is None:
                metadata["name"] = name
                metadata.pop("resourceVersion", None)
                return self._create(res, namespace, obj)
            raise _not_found(res, name)
        wanted_rv = metadata.get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise _conflict(res, name)
        return self._commit(res, current, self._prepare_update(res, obj, current, subresource))

    def _patch(self, res: Resource, current: Obj, content_type: str, patch: Any,
               subresource: str | None) -> web.Response:
        name = current["metadata"]["name"]
        if content_type == "application/json-patch+json":
            if not isinstance(patch, list):
                raise _Failure(422, "Invalid", "the patch could not be applied: a JSON patch "
                               "must be a list of operations")
            try:
                updated = jsonpatch.JsonPatch(patch).apply(current, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError,
                    KeyError, AttributeError) as error:
                raise _Failure(422, "Invalid", f"the patch could not be applied: {error}"
                               ) from None
        elif content_type == "application/merge-patch+json":
            updated = _merge_patch(current, patch)
        else:
            raise _Failure(415, "UnsupportedMediaType",
                           f"the fake apiserver applies only merge and JSON patches, not "
                           f"{content_type}; test strategic merge against the real apiserver "
                           "(tests/support/apiserver.py)")
        if not isinstance(updated, dict) or not isinstance(updated.get("metadata"), dict):
            raise _bad_request("the patch must leave an object with metadata")
        # A resourceVersion the patch sets is a precondition, as in Kubernetes.
        wanted_rv = updated["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise _conflict(res, name)
        return self._commit(res, current, self._prepare_update(res, updated, current, subresource))

    @staticmethod
    def _prepare_update(res: Resource, new: Obj, old: Obj, subresource: str | None) -> Obj:
        """The object a PUT or PATCH stores: /status changes only status, the main resource
        everything else; metadata the server owns is kept (apiserver/rest.py)."""
        if subresource == "status":
            result = copy.deepcopy(old)
            result["status"] = new.get("status", {})
            return result
        new = copy.deepcopy(new)
        metadata, old_metadata = new.setdefault("metadata", {}), old["metadata"]
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        for owned in ("uid", "creationTimestamp", "generation", "namespace", "name"):
            if owned in old_metadata:
                metadata[owned] = old_metadata[owned]
            else:
                metadata.pop(owned, None)
        for owned in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if owned in old_metadata:  # a client's own value is kept: see the docstring
                metadata[owned] = old_metadata[owned]
        metadata["resourceVersion"] = old_metadata["resourceVersion"]
        metadata.pop("managedFields", None)
        if old_metadata.get("deletionTimestamp"):
            added = set(metadata.get("finalizers") or []) - set(old_metadata.get("finalizers")
                                                                 or [])
            if added:
                raise _invalid(res, metadata.get("name", ""), "metadata.finalizers",
                               "Forbidden: no new finalizers can be added if the object is "
                               "being deleted", "FieldValueForbidden")
        if KINDS[res].has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if "generation" in old_metadata and _spec_of(new) != _spec_of(old):
            metadata["generation"] = int(old_metadata["generation"]) + 1
        return new

    def _commit(self, res: Resource, current: Obj, new: Obj) -> web.Response:
        """Store an update: nothing for a no-op, removal once the last finalizer of an
        object being deleted is gone."""
        if new == current:
            return web.json_response(current)
        old_metadata, metadata = current["metadata"], new["metadata"]
        if (old_metadata.get("deletionTimestamp") and old_metadata.get("finalizers")
                and not metadata.get("finalizers")
                and not metadata.get("deletionGracePeriodSeconds")):
            self.objects[(res, object_key(current))] = new
            return web.json_response(self.remove(res, object_key(current)))
        return web.json_response(self._write(res, "MODIFIED", new))

    def _delete(self, res: Resource, current: Obj, options: Obj) -> web.Response:
        metadata = current["metadata"]
        name = metadata["name"]
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != metadata.get("uid"):
            raise _conflict(res, name, f"Precondition failed: UID in precondition: "
                            f"{preconditions['uid']}, UID in object meta: {metadata.get('uid')}")
        wanted_rv = preconditions.get("resourceVersion")
        if wanted_rv and wanted_rv != metadata["resourceVersion"]:
            raise _conflict(res, name, f"Precondition failed: ResourceVersion in precondition: "
                            f"{wanted_rv}, ResourceVersion in object meta: "
                            f"{metadata['resourceVersion']}")
        grace = _grace_period(res, current, options.get("gracePeriodSeconds"))
        obj = copy.deepcopy(current)
        metadata = obj["metadata"]
        finalizer = _PROPAGATION_FINALIZERS.get(options.get("propagationPolicy") or "")
        finalizer_added = finalizer is not None and finalizer not in (metadata.get("finalizers")
                                                                      or [])
        if finalizer_added:
            metadata["finalizers"] = [*(metadata.get("finalizers") or []), finalizer]
        if not metadata.get("finalizers") and grace == 0:
            return web.json_response(self.remove(res, object_key(obj)))
        # Graceful or finalized deletion: mark it and let its owner finish.
        if metadata.get("deletionTimestamp") and grace >= (
                metadata.get("deletionGracePeriodSeconds") or 0):
            if not finalizer_added:
                return web.json_response(current)
        else:
            metadata["deletionTimestamp"] = _in(grace)
            metadata["deletionGracePeriodSeconds"] = grace
            if "generation" in metadata:
                metadata["generation"] = int(metadata["generation"]) + 1
        return web.json_response(self._write(res, "MODIFIED", obj))


def _seen_as(event: _Event, predicate: Predicate) -> str | None:
    """The event type a watcher selecting by ``predicate`` sees (Kubernetes selector
    semantics): a MODIFIED leaving the selection is DELETED, one entering it ADDED."""
    if event.type != "MODIFIED":
        return event.type if predicate(event.object) else None
    matched_before = event.previous is not None and predicate(event.previous)
    if predicate(event.object):
        return "MODIFIED" if matched_before else "ADDED"
    return "DELETED" if matched_before else None


def _grace_period(res: Resource, obj: Obj, requested: int | None) -> int:
    """Seconds a deleted object stays, marked: only a pod bound to a node and not
    finished has containers to stop (apiserver/strategies/pods.py)."""
    spec = obj.get("spec") or {}
    if res != PODS or not spec.get("nodeName") or is_terminal(obj):
        return 0
    if requested is not None:
        return max(0, requested)
    return int(spec.get("terminationGracePeriodSeconds", _DEFAULT_POD_GRACE_SECONDS))


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise _bad_request(f"the request body is not JSON: {error}") from None


def _object_body(res: Resource, body: Any) -> Obj:
    if not isinstance(body, dict):
        raise _bad_request(f"the request body must be a {res.kind} object")
    for field_name, what, expected in (("apiVersion", "API version", res.api_version),
                                       ("kind", "kind", res.kind)):
        if body.get(field_name) and body[field_name] != expected:
            raise _bad_request(f"the {what} in the data ({body[field_name]}) does not match "
                               f"the expected {what} ({expected})")
    if not isinstance(body.get("metadata", {}), dict):
        raise _bad_request("metadata must be an object")
    return copy.deepcopy(body)


def _int_param(query: Mapping[str, str], name: str) -> int:
    try:
        return int(query.get(name) or 0)
    except ValueError:
        raise _bad_request(f"invalid {name} {query[name]!r}") from None


def _delete_options(query: Mapping[str, str], body: Any) -> Obj:
    """DeleteOptions from the body, overridden by the query parameters."""
    options = dict(body) if isinstance(body, dict) else {}
    if query.get("gracePeriodSeconds"):
        options["gracePeriodSeconds"] = _int_param(query, "gracePeriodSeconds")
    if query.get("propagationPolicy"):
        options["propagationPolicy"] = query["propagationPolicy"]
    if options.get("propagationPolicy") not in (None, "Orphan", "Background", "Foreground"):
        raise _bad_request(f"unsupported propagationPolicy: {options['propagationPolicy']}")
    return options
