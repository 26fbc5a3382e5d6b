"""A small in-memory Kubernetes API server for fast unit tests of API clients.

It speaks just enough of the real protocol to exercise `ApiClient` and `Informer` end to
end over real HTTP on 127.0.0.1: CRUD with resourceVersion conflicts, paginated lists,
label/field selectors, newline-delimited JSON watches that replay from a resourceVersion,
bookmarks, and failure switches (force 410, drop every open watch, fail the next requests).
It records every request so a test can assert what a client asked for.

It is a fake for unit tests only (STYLE.md 7); the real apiserver is proven separately.
Only the resources in `apiclient.resources.ALL_RESOURCES` are served.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import orjson
from aiohttp import web

from .kubeconfig import ClusterConfig
from .meta import object_key, utc_now
from .resources import ALL_RESOURCES, Resource
from .selectors import parse_field_selector, parse_label_selector

__all__ = ["FakeApiServer", "RecordedRequest"]


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
    object: dict


@dataclass
class _Watcher:
    resource: Resource
    namespace: str | None
    query: Mapping[str, str]
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    request: web.Request | None = None


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


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
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


class FakeApiServer:
    """Use as `async with FakeApiServer() as server: client = ApiClient(server.config())`."""

    def __init__(self, *, token: str | None = None):
        self.token = token
        self.requests: list[RecordedRequest] = []
        self.objects: dict[tuple[Resource, str], dict] = {}
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

    def seed(self, res: Resource, obj: dict) -> dict:
        """Store an object directly (as if created), notifying watchers."""
        return self._write(res, "ADDED", self._stamp(res, copy.deepcopy(obj)))

    def remove(self, res: Resource, key: str) -> dict:
        """Delete an object directly, notifying watchers."""
        obj = self.objects.pop((res, key))
        self.resource_version += 1
        obj = {
            **obj,
            "metadata": {**obj["metadata"], "resourceVersion": str(self.resource_version)},
        }
        self._publish(_Event(self.resource_version, "DELETED", res, obj))
        return obj

    def compact(self) -> None:
        """Forget history: a watch from any resourceVersion seen so far now gets 410."""
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

    def _stamp(self, res: Resource, obj: dict) -> dict:
        metadata = obj.setdefault("metadata", {})
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", utc_now())
        obj.setdefault("kind", res.kind)
        obj.setdefault("apiVersion", res.api_version)
        return obj

    def _write(self, res: Resource, event_type: str, obj: dict) -> dict:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self.objects[(res, object_key(obj))] = obj
        self._publish(_Event(self.resource_version, event_type, res, copy.deepcopy(obj)))
        return obj

    def _publish(self, event: _Event) -> None:
        self.events.append(event)
        for watcher in self._watchers:
            if watcher.resource == event.resource and self._visible(
                event.object, watcher.namespace, watcher.query
            ):
                watcher.queue.put_nowait((event.type, event.object))

    @staticmethod
    def _visible(obj: dict, namespace: str | None, query: Mapping[str, str]) -> bool:
        metadata = obj.get("metadata") or {}
        if namespace and metadata.get("namespace") != namespace:
            return False
        labels = parse_label_selector(query.get("labelSelector", ""))
        if not labels.matches(metadata.get("labels")):
            return False
        fields = parse_field_selector(query.get("fieldSelector", ""))
        return fields.matches({name: _field_value(obj, name) for name in fields.fields})

    # ------------------------------------------------------------------ HTTP

    def _route(self, path: str) -> tuple[Resource, str | None, str | None, str | None] | None:
        parts = [part for part in path.split("/") if part]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        for res in ALL_RESOURCES:
            if (res.group, res.version, res.plural) == (group, version, rest[0]):
                name = rest[1] if len(rest) > 1 else None
                subresource = rest[2] if len(rest) > 2 else None
                return res, namespace, name, subresource
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append(RecordedRequest(request.method, request.path, query))
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        if self.fail_next_requests > 0:
            self.fail_next_requests -= 1
            return _status(500, "InternalError", "injected failure")
        route = self._route(request.path)
        if route is None:
            return _status(404, "NotFound", f"the server could not find {request.path}")
        res, namespace, name, _subresource = route
        if name is None:
            if request.method == "GET" and query.get("watch") in ("true", "1"):
                return await self._watch(request, res, namespace, query)
            if request.method == "GET":
                return self._list(res, namespace, query)
            if request.method == "POST":
                return self._create(res, namespace, await request.json())
            return _status(405, "MethodNotAllowed", f"{request.method} is not allowed here")
        key = f"{namespace}/{name}" if namespace else name
        current = self.objects.get((res, key))
        if request.method == "POST":  # create on a subresource (binding, eviction)
            return web.json_response(await request.json(), status=201)
        if current is None:
            return _status(404, "NotFound", f'{res.plural} "{name}" not found')
        if request.method == "GET":
            return web.json_response(current)
        if request.method == "PUT":
            return self._replace(res, current, await request.json())
        if request.method == "PATCH":
            return self._patch(res, current, request.content_type, await request.read())
        if request.method == "DELETE":
            body = await request.json() if request.can_read_body else {}
            return self._delete(res, key, current, body or {})
        return _status(405, "MethodNotAllowed", f"{request.method} is not allowed here")

    def _list(self, res: Resource, namespace: str | None, query: Mapping[str, str]) -> web.Response:
        matching = sorted(
            (obj for (r, _), obj in self.objects.items() if r == res),
            key=object_key,
        )
        matching = [obj for obj in matching if self._visible(obj, namespace, query)]
        start, list_rv = 0, self.resource_version
        if query.get("continue"):
            decoded = orjson.loads(base64.urlsafe_b64decode(query["continue"]))
            if decoded["rv"] < self.oldest_watchable:
                return _status(410, "Expired", "the continue token has expired")
            start, list_rv = decoded["start"], decoded["rv"]
        limit = int(query.get("limit") or 0)
        page = matching[start : start + limit] if limit else matching[start:]
        metadata: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if limit and start + limit < len(matching):
            token = {"start": start + limit, "rv": list_rv}
            metadata["continue"] = base64.urlsafe_b64encode(orjson.dumps(token)).decode()
        body = {
            "kind": res.list_kind,
            "apiVersion": res.api_version,
            "metadata": metadata,
            "items": [
                {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")} for obj in page
            ],
        }
        return web.json_response(body)

    def _create(self, res: Resource, namespace: str | None, body: dict) -> web.Response:
        body = copy.deepcopy(body)
        metadata = body.setdefault("metadata", {})
        if res.namespaced:
            metadata["namespace"] = namespace or metadata.get("namespace") or "default"
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        if not metadata.get("name"):
            return _status(422, "Invalid", f"{res.kind}: metadata.name: Required value")
        if (res, object_key(body)) in self.objects:
            return _status(
                409, "AlreadyExists", f'{res.plural} "{metadata["name"]}" already exists'
            )
        return web.json_response(self._write(res, "ADDED", self._stamp(res, body)), status=201)

    def _replace(self, res: Resource, current: dict, body: dict) -> web.Response:
        wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            return self._conflict(res, current)
        body = copy.deepcopy(body)
        body["metadata"] = {**current["metadata"], **body.get("metadata", {})}
        return web.json_response(self._write(res, "MODIFIED", self._stamp(res, body)))

    def _patch(self, res: Resource, current: dict, content_type: str, raw: bytes) -> web.Response:
        patch = orjson.loads(raw)
        if content_type == "application/json-patch+json":
            updated = jsonpatch.apply_patch(current, patch)
        elif content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            updated = _merge_patch(current, patch)
        else:
            return _status(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format: {content_type}",
            )
        wanted_rv = (updated.get("metadata") or {}).get("resourceVersion")
        if wanted_rv != current["metadata"]["resourceVersion"]:
            return self._conflict(res, current)
        return web.json_response(self._write(res, "MODIFIED", updated))

    def _delete(self, res: Resource, key: str, current: dict, options: dict) -> web.Response:
        preconditions = options.get("preconditions") or {}
        metadata = current["metadata"]
        for field_name in ("uid", "resourceVersion"):
            if preconditions.get(field_name) and preconditions[field_name] != metadata[field_name]:
                return self._conflict(res, current)
        return web.json_response(self.remove(res, key))

    @staticmethod
    def _conflict(res: Resource, current: dict) -> web.Response:
        name = current["metadata"]["name"]
        return _status(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {res.plural} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
        )

    async def _watch(
        self, request: web.Request, res: Resource, namespace: str | None, query: Mapping[str, str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if self.close_watches_at_once:
            await response.write_eof()
            return response
        watcher = _Watcher(res, namespace, query, request=request)
        start_rv = int(query.get("resourceVersion") or 0)
        if self.gone_next_watches > 0 or (start_rv and start_rv < self.oldest_watchable):
            self.gone_next_watches = max(0, self.gone_next_watches - 1)
            gone = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": 410,
                "reason": "Expired",
                "message": f"too old resource version: {start_rv}",
            }
            await response.write(orjson.dumps({"type": "ERROR", "object": gone}) + b"\n")
            await response.write_eof()
            return response
        if start_rv:
            for event in self.events:
                if (
                    event.resource == res
                    and event.resource_version > start_rv
                    and self._visible(event.object, namespace, query)
                ):
                    watcher.queue.put_nowait((event.type, event.object))
        else:
            for (r, _), obj in sorted(self.objects.items(), key=lambda item: item[0][1]):
                if r == res and self._visible(obj, namespace, query):
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
