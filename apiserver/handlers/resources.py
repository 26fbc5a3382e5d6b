"""HTTP handlers for every resource path: get, list, watch, create, update, patch, delete.

One generic handler serves every registry entry (kube-apiserver's ``endpoints/handlers``):
it parses the request once (:mod:`apiserver.handlers.request`), applies query options
(selectors, pagination, dryRun, fieldValidation, DeleteOptions) and delegates object
semantics to :class:`~apiserver.rest.RestStore`. Lists and watches are served from the
watch cache as raw JSON bytes: a LIST joins stored bytes and a watch event is one
bytes concatenation, so no JSON is re-encoded per client.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from apiclient.labels import INITIAL_EVENTS_END_ANNOTATION
from apiclient.selectors import SelectorError, parse_field_selector, parse_label_selector
from apiserver import openapi, status
from apiserver.auth.filters import CONTEXT
from apiserver.handlers import request as req
from apiserver.handlers import subresources, table
from apiserver.handlers.request import RequestInfo
from apiserver.metrics import APIServerMetrics
from apiserver.registry import Registry, ResourceType
from apiserver.rest import DeleteOptions, RestStore
from apiserver.storage.watchcache import CachedObject, TooOldResourceVersionError, WatchCache

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Predicate = Any
Route = Callable[[web.Request, RequestInfo], Awaitable[web.StreamResponse]]

WATCH_DEFAULT_TIMEOUT = 1800.0
BOOKMARK_INTERVAL = 30.0
CONSISTENT_READ_TIMEOUT = 3.0


class ResourceHandler:
    """Routes ``/api/v1/...`` and ``/apis/{group}/{version}/...`` resource requests."""

    def __init__(self, *, registry: Registry, store: RestStore, cache: WatchCache,
                 metrics: APIServerMetrics, kubelet_client: subresources.KubeletClient,
                 bookmark_interval: float = BOOKMARK_INTERVAL,
                 resource_routes: Mapping[tuple[str, str, str | None, str], Route]
                 | None = None) -> None:
        self.registry = registry
        self.store = store
        self.cache = cache
        self.metrics = metrics
        self.kubelet = kubelet_client
        self.bookmark_interval = bookmark_interval
        # (subresource or None, verb) -> handler; anything else is 405.
        self._routes: dict[tuple[str | None, str], Route] = {
            (None, "get"): self.get,
            (None, "list"): self.list,
            (None, "watch"): self.watch,
            (None, "create"): self.create,
            (None, "update"): self.update,
            (None, "patch"): self.patch,
            (None, "delete"): self.delete,
            (None, "deletecollection"): self.delete_collection,
            ("status", "get"): self.get,
            ("status", "update"): partial(self.update, subresource="status"),
            ("status", "patch"): partial(self.patch, subresource="status"),
            ("finalize", "update"): self.update,
            ("binding", "create"): partial(subresources.bind, store),
            ("scale", "get"): partial(subresources.get_scale, store),
            ("scale", "update"): partial(subresources.update_scale, store),
            ("scale", "patch"): partial(subresources.update_scale, store),
            ("log", "get"): partial(subresources.logs, store, kubelet=kubelet_client),
        }
        # (group, plural, subresource, verb) -> handler of one resource's own (e.g. the
        # computed, never stored TokenReview and serviceaccounts/token); these win.
        self._resource_routes = dict(resource_routes or {})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        info = req.parse(request, self.registry)
        request[req.INFO] = info
        rt = info.resource
        route = self._resource_routes.get((rt.group, rt.plural, info.subresource, info.verb)) \
            or self._routes.get((info.subresource, info.verb))
        if route is None or (info.subresource is None and info.verb not in rt.verbs):
            raise status.method_not_allowed(request.method)
        return await route(request, info)

    # --- reads -----------------------------------------------------------------------

    def respond_object(self, request: web.Request, rt: ResourceType, obj: Obj, *,
                       code: int = 200, warnings: list[str] | None = None) -> web.Response:
        headers = _warning_headers(warnings)
        if table.wants_table(request.headers.get("Accept", "")):
            include = request.query.get("includeObject", "Metadata")
            return req.json_response(table.table(
                rt, [obj], resource_version=obj["metadata"].get("resourceVersion", ""),
                include=include), code=code, headers=headers)
        return req.json_response(obj, code=code, headers=headers)

    async def get(self, request: web.Request, info: RequestInfo) -> web.Response:
        assert info.name is not None
        obj = await self.store.get(info.resource, info.namespace, info.name)
        return self.respond_object(request, info.resource, obj)

    def _predicate(self, request: web.Request, rt: ResourceType,
                   namespace: str | None) -> Predicate | None:
        try:
            labels = parse_label_selector(request.query.get("labelSelector", ""))
            fields = parse_field_selector(request.query.get("fieldSelector", ""))
        except SelectorError as exc:
            raise status.bad_request(f"unable to parse requirement: {exc}") from None
        supported = {"metadata.name", *rt.fields}
        if rt.namespaced:
            supported.add("metadata.namespace")
        for name in fields.fields:
            if name not in supported:
                raise status.bad_request(f'field label not supported: {name}')
        if labels.empty and fields.empty:
            return None
        return lambda obj: labels.matches(obj.labels) and fields.matches(obj.fields)

    async def _fresh_cache(self, request: web.Request) -> None:
        """Consistent reads from cache: wait until the cache has every committed write."""
        rv = request.query.get("resourceVersion", "")
        if rv == "0":
            return
        target = await self.store.storage.current_revision() if rv == "" else _parse_rv(rv)
        try:
            await self.cache.wait_for_revision(target, timeout=CONSISTENT_READ_TIMEOUT)
        except TimeoutError:
            raise status.timeout(f"Too large resource version: {target}, current: "
                                 f"{self.cache.revision}") from None

    async def list(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        rt = info.resource
        predicate = self._predicate(request, rt, info.namespace)
        limit = req.int_param(request, "limit") or 0
        token = request.query.get("continue", "")
        start_after, list_rv = _parse_continue(token) if token else (None, None)
        if list_rv is None:
            await self._fresh_cache(request)
        prefix = rt.namespace_prefix(info.namespace)
        objects, revision = self.cache.list(prefix, predicate=predicate,
                                            start_after=start_after,
                                            limit=limit + 1 if limit > 0 else 0)
        meta: Obj = {"resourceVersion": str(list_rv or revision)}
        if limit > 0 and len(objects) > limit:
            objects = objects[:limit]
            meta["continue"] = _make_continue(objects[-1].key, list_rv or revision)
            if predicate is None:  # Kubernetes counts the rest only without selectors
                meta["remainingItemCount"] = self.cache.count(prefix, after=objects[-1].key)
        if table.wants_table(request.headers.get("Accept", "")):
            decoded = [orjson.loads(o.raw) for o in objects]
            return req.json_response(table.table(
                rt, decoded, resource_version=meta["resourceVersion"],
                continue_token=meta.get("continue", ""),
                include=request.query.get("includeObject", "Metadata")))
        head = orjson.dumps({"kind": rt.list_kind, "apiVersion": rt.group_version,
                             "metadata": meta})
        return await _stream_list(request, head[:-1] + b',"items":[', objects)

    async def watch(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        rt = info.resource
        predicate = self._predicate(request, rt, info.namespace)
        if info.name:  # /pods/{name}?watch=true is a watch with a name selector
            predicate = _and_name(info.name, predicate)
        prefix = rt.namespace_prefix(info.namespace)
        timeout = req.int_param(request, "timeoutSeconds")
        deadline = time.monotonic() + (timeout if timeout is not None else WATCH_DEFAULT_TIMEOUT)
        bookmarks = req.is_true(request.query.get("allowWatchBookmarks"))
        initial_events = req.is_true(request.query.get("sendInitialEvents"))
        as_table = table.wants_table(request.headers.get("Accept", ""))
        rv = request.query.get("resourceVersion", "")

        snapshot: list[CachedObject] = []
        if rv in ("", "0") or initial_events:
            if rv == "":
                await self._fresh_cache(request)
            snapshot, start = self.cache.list(prefix, predicate=predicate)
        else:
            start = _parse_rv(rv)

        response = web.StreamResponse(headers={"Content-Type": req.JSON,
                                               "Cache-Control": "no-cache, private"})
        response.enable_chunked_encoding()
        try:
            watcher = self.cache.watch(prefix, from_revision=start, predicate=predicate)
        except TooOldResourceVersionError as exc:
            await response.prepare(request)
            error = status.gone(f"too old resource version: {exc.requested} ({exc.oldest})")
            await response.write(orjson.dumps({"type": "ERROR", "object": error.to_status()})
                                 + b"\n")
            return response

        await response.prepare(request)
        encoder = _EventEncoder(rt, as_table=as_table)
        last_sent = start
        try:
            for obj in snapshot:
                await response.write(encoder.event("ADDED", obj))
                self.metrics.watch_events.labels(rt.group, rt.version, rt.kind).inc()
            if initial_events:
                await response.write(_bookmark(rt, start, initial_end=True))
            next_bookmark = time.monotonic() + self.bookmark_interval
            iterator = aiter(watcher)
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                wait = min(deadline, next_bookmark) - now
                try:
                    event = await asyncio.wait_for(anext(iterator), timeout=wait)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if bookmarks and time.monotonic() < deadline:
                        last_sent = max(last_sent, self.cache.revision)
                        await response.write(_bookmark(rt, last_sent))
                    next_bookmark = time.monotonic() + self.bookmark_interval
                    continue
                last_sent = event.obj.resource_version
                await response.write(encoder.event(event.type, event.obj))
                self.metrics.watch_events.labels(rt.group, rt.version, rt.kind).inc()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            watcher.close()
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    # --- writes ----------------------------------------------------------------------

    def check_fields(self, request: web.Request, rt: ResourceType, obj: Obj,
                     *, api_version: str | None = None) -> list[str]:
        """Type errors are 400; unknown fields are 400 under Strict, warnings otherwise."""
        api_version = api_version or rt.group_version
        # A strategy that reports type errors itself answers 422 with field paths (RBAC).
        type_errors = [] if rt.strategy.validates_types else \
            openapi.find_type_errors(api_version, rt.kind, obj)
        if type_errors:
            details = "; ".join(f"{path}: {message}" for path, message in type_errors)
            raise status.bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled '
                                     f"as a {rt.kind}: {details}")
        mode = request.query.get("fieldValidation", "Warn")
        if mode not in ("Strict", "Warn", "Ignore"):
            raise status.bad_request(f"fieldValidation parameter unsupported: {mode}")
        if mode == "Ignore":
            return []
        unknown = openapi.find_unknown_fields(api_version, rt.kind, obj)
        if unknown and mode == "Strict":
            raise status.bad_request("strict decoding error: " + ", ".join(
                f'unknown field "{path}"' for path in unknown))
        return [f'unknown field "{path}"' for path in unknown]

    def _check_type_meta(self, rt: ResourceType, obj: Obj) -> None:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version and api_version != rt.group_version:
            raise status.bad_request(f"the API version in the data ({api_version}) does not "
                                     f"match the expected API version ({rt.group_version})")
        if kind and kind != rt.kind:
            raise status.bad_request(f"the kind in the data ({kind}) does not match the "
                                     f"expected kind ({rt.kind})")

    async def create(self, request: web.Request, info: RequestInfo) -> web.Response:
        rt = info.resource
        if info.name is not None:
            raise status.method_not_allowed("POST")
        obj = await req.read_object(request)
        self._check_type_meta(rt, obj)
        warnings = self.check_fields(request, rt, obj)
        created = await self.store.create(rt, info.namespace, obj,
                                          dry_run=_dry_run(request), ctx=request.get(CONTEXT))
        return self.respond_object(request, rt, created, code=201, warnings=warnings)

    async def update(self, request: web.Request, info: RequestInfo, *,
                     subresource: str | None = None) -> web.Response:
        rt = info.resource
        if info.name is None:
            raise status.method_not_allowed("PUT")
        obj = await req.read_object(request)
        self._check_type_meta(rt, obj)
        warnings = self.check_fields(request, rt, obj)
        result = await self.store.update(rt, info.namespace, info.name, obj,
                                         subresource=subresource, dry_run=_dry_run(request),
                                         ctx=request.get(CONTEXT))
        return self.respond_object(request, rt, result.obj, code=201 if result.created else 200,
                                   warnings=warnings)

    async def patch(self, request: web.Request, info: RequestInfo, *,
                    subresource: str | None = None) -> web.Response:
        rt = info.resource
        if info.name is None:
            raise status.method_not_allowed("PATCH")
        patch_type, patch = await req.read_patch(request)
        warnings: list[str] = []

        def checked_patch(rt_: ResourceType, old: Obj, kind: str, body: Any) -> Obj:
            new = self.store.patcher(rt_, old, kind, body)
            warnings[:] = self.check_fields(request, rt_, new)
            return new

        obj = await self.store.patch(rt, info.namespace, info.name, patch_type, patch,
                                     subresource=subresource, dry_run=_dry_run(request),
                                     patcher=checked_patch, ctx=request.get(CONTEXT))
        return self.respond_object(request, rt, obj, warnings=warnings)

    async def delete(self, request: web.Request, info: RequestInfo) -> web.Response:
        assert info.name is not None
        options = await _delete_options(request)
        obj = await self.store.delete(info.resource, info.namespace, info.name, options,
                                      ctx=request.get(CONTEXT))
        return req.json_response(obj)

    async def delete_collection(self, request: web.Request, info: RequestInfo
                                ) -> web.Response:
        rt = info.resource
        options = await _delete_options(request)
        predicate = self._predicate(request, rt, info.namespace)
        await self._fresh_cache(request)
        objects, _ = self.cache.list(rt.namespace_prefix(info.namespace), predicate=predicate)
        deleted = []
        for cached in objects:
            try:
                deleted.append(await self.store.delete(rt, cached.namespace or None, cached.name,
                                                       options, ctx=request.get(CONTEXT)))
            except status.StatusError as exc:
                if exc.code != 404:
                    raise
        return req.json_response({"kind": rt.list_kind, "apiVersion": rt.group_version,
                                  "metadata": {}, "items": deleted})


LIST_CHUNK_BYTES = 256 * 1024


async def _stream_list(request: web.Request, head: bytes, objects: list[CachedObject]
                       ) -> web.StreamResponse:
    """Write a list body in ~256 KiB chunks straight from the cached bytes.

    A 10,000-pod list is ~16 MB: building it as one bytes object would copy it several
    times, and aiohttp keeps a finished Response alive on an idle keep-alive connection,
    so large bodies would pin memory long after they were sent.
    """
    response = web.StreamResponse(headers={"Content-Type": req.JSON})
    response.enable_chunked_encoding()
    await response.prepare(request)
    chunk: list[bytes] = [head]
    size = len(head)
    for i, obj in enumerate(objects):
        if i:
            chunk.append(b",")
        chunk.append(obj.raw)
        size += len(obj.raw) + 1
        if size >= LIST_CHUNK_BYTES:
            await response.write(b"".join(chunk))
            chunk, size = [], 0
    chunk.append(b"]}")
    await response.write(b"".join(chunk))
    await response.write_eof()
    return response


class _EventEncoder:
    """Watch event lines; raw bytes pass through, Tables are built per event."""

    def __init__(self, rt: ResourceType, *, as_table: bool) -> None:
        self.rt = rt
        self.as_table = as_table
        self.first = True

    def event(self, kind: str, obj: CachedObject) -> bytes:
        if not self.as_table:
            return b'{"type":"' + kind.encode() + b'","object":' + obj.raw + b"}\n"
        decoded = orjson.loads(obj.raw)
        rendered = table.table(self.rt, [decoded],
                               resource_version=str(obj.resource_version), headers=self.first)
        self.first = False
        return orjson.dumps({"type": kind, "object": rendered}) + b"\n"


def _and_name(name: str, inner: Predicate | None) -> Predicate:
    def predicate(obj: CachedObject) -> bool:
        return obj.name == name and (inner is None or inner(obj))

    return predicate


def _bookmark(rt: ResourceType, revision: int, *, initial_end: bool = False) -> bytes:
    meta: Obj = {"resourceVersion": str(revision)}
    if initial_end:
        meta["annotations"] = {INITIAL_EVENTS_END_ANNOTATION: "true"}
    return orjson.dumps({"type": "BOOKMARK", "object": {
        "kind": rt.kind, "apiVersion": rt.group_version, "metadata": meta}}) + b"\n"


def _warning_headers(warnings: list[str] | None) -> dict[str, str] | None:
    if not warnings:
        return None
    # RFC 7234 warn-code 299; aiohttp joins repeated headers poorly, so one per request.
    return {"Warning": ", ".join('299 - "' + w.replace('"', '\\"') + '"' for w in warnings)}


def _parse_rv(rv: str) -> int:
    try:
        value = int(rv)
    except ValueError:
        raise status.bad_request(f'invalid resource version "{rv}"') from None
    if value < 0:
        raise status.bad_request(f'invalid resource version "{rv}"')
    return value


def _make_continue(last_key: str, revision: int) -> str:
    token = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key})
    return base64.urlsafe_b64encode(token).decode()


def _parse_continue(token: str) -> tuple[str, int]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return str(data["start"]), int(data["rv"])
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise status.bad_request("continue key is not valid: the continue token is malformed"
                                 ) from None


def _dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for value in values:
        if value != "All":
            raise status.bad_request(f'Invalid dry run value: "{value}"')
    return bool(values)


async def _delete_options(request: web.Request) -> DeleteOptions:
    options = DeleteOptions(dry_run=_dry_run(request))
    body = await req.read_body(request)
    if body.strip():
        data = req.decode(body, req.media_type(request))
        if not isinstance(data, dict):
            raise status.bad_request("DeleteOptions must be an object")
        grace = data.get("gracePeriodSeconds")
        if grace is not None and not isinstance(grace, int):
            raise status.bad_request("gracePeriodSeconds must be an integer")
        options.grace_period_seconds = grace
        options.propagation_policy = data.get("propagationPolicy")
        preconditions = data.get("preconditions") or {}
        options.precondition_uid = preconditions.get("uid")
        options.precondition_resource_version = preconditions.get("resourceVersion")
        options.dry_run = options.dry_run or bool(data.get("dryRun"))
    grace_param = req.int_param(request, "gracePeriodSeconds")
    if grace_param is not None:
        options.grace_period_seconds = grace_param
    if request.query.get("propagationPolicy"):
        options.propagation_policy = request.query["propagationPolicy"]
    if options.propagation_policy not in (None, "Orphan", "Background", "Foreground"):
        raise status.bad_request(f"unsupported propagationPolicy: "
                                 f"{options.propagation_policy}")
    return options
