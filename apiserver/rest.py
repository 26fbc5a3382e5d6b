"""The generic REST store: Kubernetes object semantics on top of the key-value storage.

This is kube-apiserver's ``registry/generic/registry/store.go`` in small: it owns what
the server keeps in object metadata (uid, creationTimestamp, resourceVersion, generation,
deletionTimestamp, finalizers), optimistic concurrency (a stale resourceVersion is a 409),
no-op updates (not written, resourceVersion unchanged — so a second ``kubectl apply`` is
a no-op), the ``/status`` subresource writing status only, graceful deletion and
deletion that waits for finalizers. It never asks which kind it holds: what a kind does
differently (its initial status, which deletes are graceful, what deleting a namespace
takes with it, Service IP / NodePort allocations) is the kind's strategy
(:mod:`apiserver.strategies`), found on its registry entry.

It knows nothing about HTTP: handlers and in-process controllers call it alike, and it
reports failure by raising :class:`~apiserver.status.StatusError`. Reads of single
objects go to storage (read-your-writes); lists and watches come from the watch cache.
"""

from __future__ import annotations

import contextlib
import copy
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from apiclient.meta import format_time, utc_now
from apiserver import status
from apiserver.admission.allocators import ClusterIPAllocator, NodePortAllocator
from apiserver.registry import Registry, ResourceType
from apiserver.storage.interface import (
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Storage,
)
from apiserver.storage.watchcache import WatchCache
from apiserver.strategies import DeleteOptions

if TYPE_CHECKING:
    from apiserver.auth.context import RequestContext

Obj = dict[str, Any]
Patcher = Callable[[ResourceType, Obj, str, Any], Obj]
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's SimpleNameGenerator alphabet
_GUARANTEED_UPDATE_ATTEMPTS = 16
_CACHE_READ_WAIT = 1.0  # seconds a read waits for the watch cache before asking storage

__all__ = ["CreateAdmission", "DeleteOptions", "RestStore", "WriteAdmission", "WriteResult"]


class CreateAdmission(Protocol):
    """An admission plugin on the create path (kube's mutating + validating admission for
    CREATE): it runs before the kind's strategy, may change the object, and refuses it by
    raising a StatusError (e.g. :mod:`apiserver.admission.serviceaccount`)."""

    name: str

    async def admit_create(self, rt: ResourceType, obj: Obj, store: RestStore) -> None: ...


class WriteAdmission(Protocol):
    """A validating admission plugin on every write (kube's validating admission for
    CREATE, UPDATE and DELETE, e.g. NodeRestriction): it runs after the kind's validation
    with the request's context, the object as it would be stored (None on DELETE) and
    the stored one (None on CREATE), and refuses by raising a StatusError."""

    name: str

    async def validate(self, ctx: RequestContext | None, operation: str, rt: ResourceType,
                       subresource: str | None, new: Obj | None, old: Obj | None, *,
                       name: str, namespace: str | None, store: RestStore) -> None: ...


@dataclass(slots=True)
class WriteResult:
    obj: Obj
    created: bool = False
    warnings: list[str] = field(default_factory=list)


def decode(kv: KeyValue) -> Obj:
    """A stored object with its resourceVersion set from the store's mod revision."""
    obj = orjson.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


def encode(obj: Obj) -> bytes:
    """Stored form: the resourceVersion is the store's business, never part of the value."""
    meta = obj.get("metadata") or {}
    rv = meta.pop("resourceVersion", None)
    try:
        return orjson.dumps(obj)
    finally:
        if rv is not None:
            meta["resourceVersion"] = rv


def generate_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))


def _now_plus(seconds: int) -> str:
    return format_time(datetime.now(UTC) + timedelta(seconds=seconds))


def _spec_of(obj: Obj) -> Any:
    """Everything a generation bump looks at: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


# DeleteOptions.propagationPolicy -> the finalizer the garbage collector acts on.
PROPAGATION_FINALIZERS = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}


def _add_propagation_finalizer(meta: Obj, policy: str | None) -> bool:
    """Orphan and Foreground deletion hand the object to the garbage collector, as in
    Kubernetes: it removes the finalizer once dependents are orphaned or deleted."""
    finalizer = PROPAGATION_FINALIZERS.get(policy or "")
    finalizers = list(meta.get("finalizers") or [])
    if finalizer is None or finalizer in finalizers:
        return False
    meta["finalizers"] = [*finalizers, finalizer]
    return True


class RestStore:
    """Create/get/update/patch/delete with Kubernetes semantics for every registry entry."""

    def __init__(self, storage: Storage, registry: Registry, *,
                 service_ips: ClusterIPAllocator, node_ports: NodePortAllocator,
                 patcher: Patcher, cache: WatchCache | None = None,
                 admission: Sequence[CreateAdmission] = (),
                 validating: Sequence[WriteAdmission] = ()) -> None:
        self.storage = storage
        self.admission = tuple(admission)
        self.validating = tuple(validating)
        self.cache = cache
        self.registry = registry
        self.service_ips = service_ips
        self.node_ports = node_ports
        self.patcher = patcher
        self._namespaces = registry.lookup("", "v1", "namespaces")

    # --- reads -----------------------------------------------------------------------

    async def _read(self, key: str) -> KeyValue | None:
        """The newest committed value of ``key``.

        Served from the watch cache once it has applied every write already answered
        (a consistent read, so read-your-writes holds) — no thread hop to SQLite on the
        hot path. Storage answers when the cache lags. Writes still compare-and-swap
        against storage, so a stale read can only cost a retry, never a lost update.
        """
        if self.cache is not None:
            try:
                await self.cache.wait_for_revision(await self.storage.current_revision(),
                                                   timeout=_CACHE_READ_WAIT)
            except TimeoutError:
                return await self.storage.get(key)
            cached = self.cache.get(key)
            if cached is None:
                return None
            return KeyValue(key, cached.raw, create_revision=0,
                            mod_revision=cached.resource_version)
        return await self.storage.get(key)

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        kv = await self._read(rt.key(namespace, name))
        if kv is None:
            raise status.not_found(rt.group, rt.plural, name)
        return decode(kv)

    async def _require_namespace(self, namespace: str, *, creating: bool) -> None:
        assert self._namespaces is not None
        kv = await self._read(self._namespaces.key(None, namespace))
        if kv is None:
            raise status.not_found("", "namespaces", namespace)
        if creating and orjson.loads(kv.value).get("metadata", {}).get("deletionTimestamp"):
            raise status.forbidden(f"unable to create new content in namespace {namespace} "
                                   f"because it is being terminated")

    # --- create ----------------------------------------------------------------------

    async def create(self, rt: ResourceType, namespace: str | None, obj: Obj, *,
                     dry_run: bool = False, ctx: RequestContext | None = None) -> Obj:
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise status.bad_request("metadata must be an object")
        if rt.namespaced:
            ns = meta.get("namespace") or namespace
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise status.bad_request("the namespace of the provided object does not match "
                                         "the namespace sent on the request")
            if not ns:
                raise status.bad_request("an empty namespace may not be set during creation")
            meta["namespace"] = ns
            await self._require_namespace(ns, creating=True)
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = generate_name(str(meta["generateName"]))
        if meta.get("resourceVersion"):
            raise status.bad_request("resourceVersion should not be set on objects to be created")
        for plugin in self.admission:
            await plugin.admit_create(rt, obj, self)
        self._prepare_create(rt, obj)
        self._validate(rt, obj, None)
        rt.strategy.check_write(ctx, obj, None)
        await self.admit(ctx, "CREATE", rt, None, obj, None, name=meta["name"],
                         namespace=meta.get("namespace"))

        if dry_run:
            return obj
        try:
            async with self._begin_write(rt, obj, None):
                kv = await self.storage.create(rt.key(meta.get("namespace"), meta["name"]),
                                               encode(obj))
        except KeyExistsError:
            raise status.already_exists(rt.group, rt.plural, meta["name"]) from None
        meta["resourceVersion"] = str(kv.mod_revision)
        return obj

    @staticmethod
    def _prepare_create(rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        obj["apiVersion"], obj["kind"] = rt.group_version, rt.kind
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = utc_now()
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"):
            meta.pop(key, None)
        if rt.has_status or "spec" in obj:
            meta["generation"] = 1
        rt.strategy.prepare_for_create(obj)

    @staticmethod
    def _validate(rt: ResourceType, new: Obj, old: Obj | None) -> None:
        causes = rt.strategy.validate(new, old)
        if causes:
            raise status.invalid(rt.kind, rt.group, (new.get("metadata") or {}).get("name", ""),
                                 causes)

    @contextlib.asynccontextmanager
    async def _begin_write(self, rt: ResourceType, new: Obj, old: Obj | None
                           ) -> AsyncIterator[None]:
        """Around one storage write: the strategy reserves what ``new`` needs first and
        keeps it if the write succeeds, gives it back if it raises."""
        finish = await rt.strategy.begin_write(new, old, self)
        try:
            yield
        except BaseException:
            await finish(False)
            raise
        await finish(True)

    # --- update and patch -------------------------------------------------------------

    async def update(self, rt: ResourceType, namespace: str | None, name: str, obj: Obj, *,
                     subresource: str | None = None, dry_run: bool = False,
                     ctx: RequestContext | None = None) -> WriteResult:
        """PUT: the object replaces the stored one (status or main resource only)."""
        meta = obj.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise status.bad_request(f'the name of the object ({meta["name"]}) does not match '
                                     f"the name on the URL ({name})")
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise status.bad_request("the namespace of the provided object does not match the "
                                     "namespace sent on the request")
        wanted_rv = meta.get("resourceVersion") or None
        key = rt.key(namespace, name)
        current = await self._read(key)
        if current is None:
            if rt.strategy.allow_create_on_update and subresource is None:
                meta["name"] = name
                meta.pop("resourceVersion", None)
                return WriteResult(await self.create(rt, namespace, obj, dry_run=dry_run,
                                                     ctx=ctx), created=True)
            raise status.not_found(rt.group, rt.plural, name)
        return WriteResult(await self._write(rt, key, name, lambda _old: copy.deepcopy(obj),
                                             wanted_rv=wanted_rv, subresource=subresource,
                                             dry_run=dry_run, first=current, ctx=ctx))

    async def patch(self, rt: ResourceType, namespace: str | None, name: str,
                    patch_type: str, patch: Any, *, subresource: str | None = None,
                    dry_run: bool = False, patcher: Patcher | None = None,
                    ctx: RequestContext | None = None) -> Obj:
        key = rt.key(namespace, name)
        current = await self._read(key)
        if current is None:
            raise status.not_found(rt.group, rt.plural, name)
        wanted: list[str | None] = [None]

        def mutate(old: Obj) -> Obj:
            old_rv = old["metadata"].get("resourceVersion")
            new = (patcher or self.patcher)(rt, old, patch_type, patch)
            if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
                raise status.bad_request("the patch must leave an object with metadata")
            new_rv = new["metadata"].get("resourceVersion")
            # A resourceVersion inside the patch is a precondition, as in Kubernetes.
            wanted[0] = new_rv if new_rv and new_rv != old_rv else wanted[0]
            if wanted[0] is not None:
                new["metadata"]["resourceVersion"] = wanted[0]
            return new

        return await self._write(rt, key, name, mutate, wanted_rv=None, wanted_ref=wanted,
                                 subresource=subresource, dry_run=dry_run, first=current,
                                 ctx=ctx)

    async def update_with(self, rt: ResourceType, namespace: str | None, name: str,
                          mutate: Callable[[Obj], Obj], *, subresource: str | None = None
                          ) -> Obj:
        """Read-modify-write retried on conflicts (for the server's own loops)."""
        key = rt.key(namespace, name)
        current = await self._read(key)
        if current is None:
            raise status.not_found(rt.group, rt.plural, name)
        return await self._write(rt, key, name, mutate, wanted_rv=None,
                                 subresource=subresource, dry_run=False, first=current)

    async def _write(self, rt: ResourceType, key: str, name: str,
                     mutate: Callable[[Obj], Obj], *, wanted_rv: str | None,
                     subresource: str | None, dry_run: bool, first: KeyValue,
                     wanted_ref: list[str | None] | None = None,
                     ctx: RequestContext | None = None) -> Obj:
        kv: KeyValue | None = first
        for _ in range(_GUARANTEED_UPDATE_ATTEMPTS):
            if kv is None:
                raise status.not_found(rt.group, rt.plural, name)
            old = decode(kv)
            new = mutate(copy.deepcopy(old))
            if wanted_ref is not None:
                wanted_rv = wanted_ref[0]
            if wanted_rv is not None and wanted_rv != str(kv.mod_revision):
                raise status.conflict(rt.group, rt.plural, name, status.MODIFIED_CONFLICT)
            new = self._prepare_update(rt, new, old, subresource)
            # A binding is the one write allowed to set spec.nodeName: it is validated as
            # an object, not against the update rules that forbid users changing the spec.
            self._validate(rt, new, None if subresource == "binding" else old)
            rt.strategy.check_write(ctx, new, old)
            await self.admit(ctx, "UPDATE", rt, subresource, new, old, name=name,
                             namespace=old["metadata"].get("namespace"))
            if new == old and not self.storage.needs_rewrite(key):
                return old  # no-op: nothing written, resourceVersion unchanged
            if dry_run:
                return new
            if self._finalized(new):
                try:
                    return await self._remove(rt, key, new, expected=kv.mod_revision) or old
                except ConflictError as exc:
                    kv = exc.current
                    continue
            try:
                async with self._begin_write(rt, new, old):
                    stored = await self.storage.update(key, encode(new),
                                                       expected_mod_revision=kv.mod_revision)
            except ConflictError as exc:
                if wanted_rv is not None:
                    raise status.conflict(rt.group, rt.plural, name,
                                          status.MODIFIED_CONFLICT) from None
                kv = exc.current
                continue
            except KeyNotFoundError:
                raise status.not_found(rt.group, rt.plural, name) from None
            new["metadata"]["resourceVersion"] = str(stored.mod_revision)
            return new
        raise status.conflict(rt.group, rt.plural, name, "too many concurrent updates")

    @staticmethod
    def _prepare_update(rt: ResourceType, new: Obj, old: Obj, subresource: str | None) -> Obj:
        if subresource == "status":
            # Only status changes; everything else stays as stored.
            result = copy.deepcopy(old)
            result["status"] = new.get("status", {})
            return result
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        new["apiVersion"], new["kind"] = rt.group_version, rt.kind
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "generation", "namespace", "name"):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        meta["resourceVersion"] = old_meta.get("resourceVersion")
        meta.pop("managedFields", None)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise status.invalid(rt.kind, rt.group, meta.get("name", ""), [
                    status.field_cause("metadata.finalizers",
                                       "Forbidden: no new finalizers can be added if the "
                                       "object is being deleted",
                                       reason="FieldValueForbidden")])
        if subresource is None:
            rt.strategy.prepare_for_update(new, old)
        else:  # pods/binding: the server's own change to the whole object, status included
            rt.strategy.default(new)
        if "generation" in old_meta and _spec_of(new) != _spec_of(old):
            meta["generation"] = int(old_meta["generation"]) + 1
        return new

    @staticmethod
    def _finalized(obj: Obj) -> bool:
        """A deleted object whose last finalizer is gone leaves the store."""
        meta = obj.get("metadata") or {}
        return bool(meta.get("deletionTimestamp")) and not meta.get("finalizers") \
            and not meta.get("deletionGracePeriodSeconds")

    # --- delete ----------------------------------------------------------------------

    async def delete(self, rt: ResourceType, namespace: str | None, name: str,
                     options: DeleteOptions, *, ctx: RequestContext | None = None) -> Obj:
        rt.strategy.check_delete(name)
        key = rt.key(namespace, name)
        for _ in range(_GUARANTEED_UPDATE_ATTEMPTS):
            kv = await self._read(key)
            if kv is None:
                raise status.not_found(rt.group, rt.plural, name)
            obj = decode(kv)
            meta = obj["metadata"]
            _check_preconditions(rt, name, meta, options)
            await self.admit(ctx, "DELETE", rt, None, None, obj, name=name, namespace=namespace)
            grace = rt.strategy.grace_period(obj, options)
            added = _add_propagation_finalizer(meta, options.propagation_policy)
            if not meta.get("finalizers") and grace == 0:
                if options.dry_run:
                    return obj
                if rt.strategy.terminate_before_remove and not meta.get("deletionTimestamp"):
                    await self._mark_terminating(rt, key, obj, expected=kv.mod_revision)
                    continue  # re-read; removing it then takes what it holds with it
                try:
                    return await self._remove(rt, key, obj, expected=kv.mod_revision) or obj
                except ConflictError:
                    continue
            # Graceful or finalized deletion: mark it and let its owner finish.
            if not _mark_deleted(rt, obj, grace, finalizer_added=added) or options.dry_run:
                return obj
            try:
                stored = await self.storage.update(key, encode(obj),
                                                   expected_mod_revision=kv.mod_revision)
            except ConflictError:
                continue
            meta["resourceVersion"] = str(stored.mod_revision)
            return obj
        raise status.conflict(rt.group, rt.plural, name, "too many concurrent updates")

    async def admit(self, ctx: RequestContext | None, operation: str, rt: ResourceType,
                    subresource: str | None, new: Obj | None, old: Obj | None, *,
                    name: str, namespace: str | None) -> None:
        """Run the validating admission plugins on one write (also for subresources
        served outside this store, such as ``serviceaccounts/token``)."""
        for plugin in self.validating:
            await plugin.validate(ctx, operation, rt, subresource, new, old, name=name,
                                  namespace=namespace, store=self)

    async def _mark_terminating(self, rt: ResourceType, key: str, obj: Obj, *,
                                expected: int) -> None:
        """First step of a two-step delete: from now on the object is stored as being
        deleted (so ``_require_namespace`` refuses new content in a namespace). A conflict
        is left to the caller's re-read."""
        _set_deletion(rt, obj, 0)
        with contextlib.suppress(ConflictError):
            await self.storage.update(key, encode(obj), expected_mod_revision=expected)

    async def _remove(self, rt: ResourceType, key: str, obj: Obj, *, expected: int
                      ) -> Obj | None:
        await rt.strategy.before_remove(obj, self)
        try:
            deleted = await self.storage.delete(key, expected_mod_revision=expected)
        except KeyNotFoundError:
            return None
        obj["metadata"]["resourceVersion"] = str(deleted.mod_revision)
        await rt.strategy.after_remove(obj, self)
        return obj


def _check_preconditions(rt: ResourceType, name: str, meta: Obj, options: DeleteOptions
                         ) -> None:
    if options.precondition_uid and options.precondition_uid != meta.get("uid"):
        raise status.conflict(rt.group, rt.plural, name,
                              f"Precondition failed: UID in precondition: "
                              f"{options.precondition_uid}, UID in object meta: "
                              f"{meta.get('uid')}")
    if options.precondition_resource_version and \
            options.precondition_resource_version != meta["resourceVersion"]:
        raise status.conflict(rt.group, rt.plural, name,
                              f"Precondition failed: ResourceVersion in precondition: "
                              f"{options.precondition_resource_version}, "
                              f"ResourceVersion in object meta: {meta['resourceVersion']}")


def _set_deletion(rt: ResourceType, obj: Obj, grace: int) -> None:
    meta = obj["metadata"]
    meta["deletionTimestamp"] = _now_plus(grace)
    meta["deletionGracePeriodSeconds"] = grace
    rt.strategy.prepare_for_delete(obj)


def _mark_deleted(rt: ResourceType, obj: Obj, grace: int, *, finalizer_added: bool) -> bool:
    """Mark ``obj`` as being deleted in ``grace`` seconds; False when nothing changed.

    An object already being deleted only changes for a shorter grace period or a new
    finalizer.
    """
    meta = obj["metadata"]
    if meta.get("deletionTimestamp") and grace >= (meta.get("deletionGracePeriodSeconds") or 0):
        return finalizer_added
    _set_deletion(rt, obj, grace)
    if "generation" in meta:
        meta["generation"] = int(meta["generation"]) + 1
    return True
