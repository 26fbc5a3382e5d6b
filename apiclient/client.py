"""The async Kubernetes REST client: CRUD, paginated lists and streaming watches.

One `ApiClient` owns one aiohttp session (created lazily inside the running event loop) and
turns every failure into a typed error: an HTTP failure into the `ApiError` subclass for its
code and reason, a broken connection or timeout into `TransportError`. Nothing here retries
on its own except `list_all` (an expired continue token falls back to one unpaginated list,
as client-go's pager does) and the explicit `retry_on_conflict` helper; informers own the
reconnect policy.

Invariants:
- Ordinary requests have a total timeout; a watch has none (it is a stream that lasts
  `timeoutSeconds`), only a read-inactivity limit a little longer than `timeoutSeconds`.
- Watch streams are split into lines by this module, not by aiohttp's readline, so an
  object of any size and events split across TCP chunks are handled.
- For a namespaced resource, `namespace=None` means all namespaces in `list`/`watch` and
  the kubeconfig context's namespace in single-object calls (kubectl's rule).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson

from .backoff import Backoff
from .errors import ConflictError, GoneError, TransportError, error_from_response, error_from_status
from .kubeconfig import ClusterConfig, load_kubeconfig
from .resources import Resource
from .selectors import LabelSelector

__all__ = ["PATCH_CONTENT_TYPES", "ApiClient", "WatchEvent", "retry_on_conflict"]

T = TypeVar("T")

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}

# Extra seconds a watch may stay silent beyond its server-side timeoutSeconds before the
# connection is considered dead.
_WATCH_READ_GRACE = 30.0


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK
    object: dict


def _selector_text(selector: object | None) -> str | None:
    """The query text of a selector (str, LabelSelector or FieldSelector); None if empty."""
    if isinstance(selector, LabelSelector) and selector.matches_nothing:
        # Its text is "", which a server reads as "everything": refuse instead.
        raise ValueError("a label selector that matches nothing cannot be sent to the server")
    if selector is None:
        return None
    return str(selector) or None


def _query(**params: Any) -> dict[str, str]:
    """Drop None values; spell booleans and selectors the way Kubernetes expects."""
    query = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            query[name] = "true" if value else "false"
        else:
            query[name] = str(value)
    return query


class ApiClient:
    def __init__(self, config: ClusterConfig, *, timeout: float = 30.0):
        self.config = config
        self.timeout = timeout
        self._ssl = config.ssl_context() if config.uses_tls else None
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(
        cls, path: str | Path | None = None, *, context: str | None = None, timeout: float = 30.0
    ) -> ApiClient:
        return cls(load_kubeconfig(path, context=context), timeout=timeout)

    # ------------------------------------------------------------------ lifecycle

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json", "User-Agent": "keelson-apiclient"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            self._session = aiohttp.ClientSession(
                headers=headers,
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ raw access

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one request; a failure status raises the typed ApiError.

        The caller owns the returned response: use `async with` or call `release()`.
        """
        all_headers = dict(headers or {})
        if json is not None:
            data = orjson.dumps(json)
            all_headers.setdefault("Content-Type", "application/json")
        try:
            response = await self._get_session().request(
                method,
                self.config.server + path,  # the server URL may carry a path prefix
                params=params,
                data=data,
                headers=all_headers,
                timeout=timeout or aiohttp.ClientTimeout(total=self.timeout),
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            raise TransportError(
                f"{method} {path}: {str(error) or type(error).__name__}"
            ) from error
        if response.status >= 400:
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                body = b""
            finally:
                response.release()
            raise error_from_response(response.status, body)
        return response

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict:
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else None
        async with await self.request(
            method, path, params=params, data=data, headers=headers
        ) as response:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, TimeoutError) as error:
                raise TransportError(
                    f"{method} {path}: reading the answer failed: {error}"
                ) from error
        try:
            return orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            raise TransportError(
                f"{method} {path}: the answer is not JSON: {raw[:200]!r}"
            ) from None

    def _single_namespace(
        self, res: Resource, namespace: str | None, body: Any = None
    ) -> str | None:
        if not res.namespaced:
            return None
        if namespace:
            return namespace
        if isinstance(body, Mapping):
            from_body = (body.get("metadata") or {}).get("namespace")
            if from_body:
                return from_body
        return self.config.namespace

    # ------------------------------------------------------------------ CRUD

    async def get(
        self,
        res: Resource,
        name: str,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict:
        path = res.path(
            namespace=self._single_namespace(res, namespace), name=name, subresource=subresource
        )
        return await self._json("GET", path)

    async def list(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: object | None = None,
        field_selector: object | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
    ) -> dict:
        """One page of a list (the List object, with metadata.continue when more remain)."""
        params = _query(
            labelSelector=_selector_text(label_selector),
            fieldSelector=_selector_text(field_selector),
            limit=limit,
            resourceVersion=resource_version,
        )
        if continue_token:
            params["continue"] = continue_token
        return await self._json("GET", res.path(namespace=namespace), params=params)

    async def list_all(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: object | None = None,
        field_selector: object | None = None,
        page_size: int = 500,
        transform: Callable[[dict], dict] | None = None,
    ) -> dict:
        """Every item, following `continue`; resourceVersion is the first page's.

        `transform` is applied to each item as its page arrives, so a caller that keeps
        only a few fields never holds more than one page of whole objects (the proxy's
        informers at 10,000 Services: ~60 MB less peak memory than transforming at the end).
        """
        selectors = {"label_selector": label_selector, "field_selector": field_selector}

        def items_of(page: dict) -> list[dict]:
            items = page.get("items") or []
            return [transform(item) for item in items] if transform else list(items)

        first = await self.list(res, namespace=namespace, limit=page_size, **selectors)
        items = items_of(first)
        token = (first.get("metadata") or {}).get("continue")
        first["items"] = []
        while token:
            try:
                page = await self.list(
                    res, namespace=namespace, limit=page_size, continue_token=token, **selectors
                )
            except GoneError:
                # The continue token expired mid-way: one consistent unpaginated list instead.
                listing = await self.list(res, namespace=namespace, **selectors)
                return {**listing, "items": items_of(listing)}
            items.extend(items_of(page))
            token = (page.get("metadata") or {}).get("continue")
        metadata = dict(first.get("metadata") or {})
        metadata.pop("continue", None)
        metadata.pop("remainingItemCount", None)
        return {**first, "metadata": metadata, "items": items}

    async def create(
        self,
        res: Resource,
        body: dict,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict:
        namespace = self._single_namespace(res, namespace, body)
        if subresource:
            name = (body.get("metadata") or {}).get("name")
            path = res.path(namespace=namespace, name=name, subresource=subresource)
        else:
            path = res.path(namespace=namespace)
        return await self._json("POST", path, body=body)

    async def replace(
        self,
        res: Resource,
        body: dict,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict:
        """PUT the whole object; the name comes from body.metadata.name."""
        name = (body.get("metadata") or {}).get("name")
        if not name:
            raise ValueError(f"cannot replace a {res.kind} without metadata.name")
        path = res.path(
            namespace=self._single_namespace(res, namespace, body),
            name=name,
            subresource=subresource,
        )
        return await self._json("PUT", path, body=body)

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: dict | list,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        patch_type: str = "merge",
    ) -> dict:
        """PATCH with "merge" (RFC 7386), "strategic" or "json" (RFC 6902)."""
        content_type = PATCH_CONTENT_TYPES.get(patch_type)
        if content_type is None:
            raise ValueError(
                f"unknown patch type {patch_type!r}; use one of {sorted(PATCH_CONTENT_TYPES)}"
            )
        path = res.path(
            namespace=self._single_namespace(res, namespace), name=name, subresource=subresource
        )
        return await self._json("PATCH", path, body=patch, content_type=content_type)

    async def delete(
        self,
        res: Resource,
        name: str,
        *,
        namespace: str | None = None,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        preconditions: Mapping[str, str] | None = None,
    ) -> dict:
        """DELETE; returns the deleted object or a Status, as the server answers."""
        path = res.path(namespace=self._single_namespace(res, namespace), name=name)
        params = _query(
            gracePeriodSeconds=grace_period_seconds, propagationPolicy=propagation_policy
        )
        body = None
        if preconditions:
            body = {
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "preconditions": dict(preconditions),
            }
        return await self._json("DELETE", path, params=params, body=body)

    # ------------------------------------------------------------------ watch

    async def watch(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: object | None = None,
        field_selector: object | None = None,
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        """Stream watch events until the server ends the stream.

        ERROR events raise: code 410 as GoneError (relist), others as their ApiError.
        A connection broken mid-stream raises TransportError.
        """
        params = _query(
            watch=True,
            labelSelector=_selector_text(label_selector),
            fieldSelector=_selector_text(field_selector),
            resourceVersion=resource_version,
            timeoutSeconds=timeout_seconds,
            allowWatchBookmarks=allow_bookmarks,
        )
        read_limit = timeout_seconds + _WATCH_READ_GRACE if timeout_seconds else None
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=read_limit)
        path = res.path(namespace=namespace)
        response = await self.request("GET", path, params=params, timeout=timeout)
        async with response:
            buffer = bytearray()
            try:
                async for chunk in response.content.iter_any():
                    buffer.extend(chunk)
                    while (end := buffer.find(b"\n")) >= 0:
                        line = bytes(buffer[:end])
                        del buffer[: end + 1]
                        if line.strip():
                            yield _parse_event(line)
            except (aiohttp.ClientError, TimeoutError) as error:
                raise TransportError(
                    f"watch {path}: stream broke: {str(error) or type(error).__name__}"
                ) from error
            if buffer.strip():
                yield _parse_event(bytes(buffer))


def _parse_event(line: bytes) -> WatchEvent:
    try:
        event = orjson.loads(line)
        event_type, obj = event["type"], event["object"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as error:
        raise TransportError(f"watch stream sent an undecodable event: {line[:200]!r}") from error
    if event_type == "ERROR":
        code = obj.get("code") or 500
        if code == 410:
            raise GoneError(410, obj.get("reason") or "Expired", obj.get("message") or "", obj)
        raise error_from_status(code, obj)
    return WatchEvent(event_type, obj)


async def retry_on_conflict(
    fn: Callable[[], Awaitable[T]], *, attempts: int = 5, backoff: float = 0.01
) -> T:
    """Run `fn` again on ConflictError (stale resourceVersion), with growing jittered delays.

    `fn` must re-read the object each time; the last ConflictError is raised if all fail.
    """
    delays = Backoff(initial=backoff, maximum=backoff * 2**attempts, jitter=0.5)
    for attempt in range(attempts):
        try:
            return await fn()
        except ConflictError:
            if attempt == attempts - 1:
                raise
            await delays.sleep()
    raise AssertionError("unreachable: attempts must be >= 1")
