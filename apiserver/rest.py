"""The generic REST store: Kubernetes object semantics on top of the key-value storage.

This is kube-apiserver's ``registry/generic/registry/store.go`` in small: it owns what
the server keeps in object metadata (uid, creationTimestamp, resourceVersion, generation,
deletionTimestamp, finalizers), optimistic concurrency (a stale resourceVersion is a 409),
no-op updates (not written, resourceVersion unchanged — so a second ``kubectl apply`` is
a no-op), spec/status separation, graceful deletion of pods bound to a node, deletion
that waits for finalizers, namespace deletion that deletes the namespace's content
(``default``, ``kube-system`` and ``kube-public`` cannot be deleted), and the Service
IP / NodePort allocations.

It knows nothing about HTTP: handlers and in-process controllers call it alike, and it
reports failure by raising :class:`~apiserver.status.StatusError`. Reads of single
objects go to storage (read-your-writes); lists and watches come from the watch cache.
"""

from __future__ import annotations

import contextlib
import copy
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from apiclient.meta import utc_now
from apiserver import status
from apiserver.admission import services as service_allocation
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

Obj = dict[str, Any]
Patcher = Callable[[ResourceType, Obj, str, Any], Obj]
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's SimpleNameGenerator alphabet
_GUARANTEED_UPDATE_ATTEMPTS = 16
_CACHE_READ_WAIT = 1.0  # seconds a read waits for the watch cache before asking storage
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})


@dataclass(slots=True)
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    precondition_uid: str | None = None
    precondition_resource_version: str | None = None
    dry_run: bool = False


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
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def pod_qos_class(pod: Obj) -> str:
    """Guaranteed / Burstable / BestEffort, as Kubernetes' qos.GetPodQOS."""
    containers = [*((pod.get("spec") or {}).get("containers") or []),
                  *((pod.get("spec") or {}).get("initContainers") or [])]
    any_set = False
    guaranteed = True
    for c in containers:
        resources = (c or {}).get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        if requests or limits:
            any_set = True
        for name in ("cpu", "memory"):
            limit = limits.get(name)
            if limit is None or str(requests.get(name, limit)) != str(limit):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


class RestStore:
    """Create/get/update/patch/delete with Kubernetes semantics for every registry entry."""

    def __init__(self, storage: Storage, registry: Registry, *,
                 service_ips: ClusterIPAllocator, node_ports: NodePortAllocator,
                 patcher: Patcher, cache: WatchCache | None = None) -> None:
        self.storage = storage
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
                     dry_run: bool = False) -> Obj:
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
        self._prepare_create(rt, obj)
        self._validate(rt, obj, None)

        if dry_run:
            return obj
        allocated = await self._allocate(rt, obj, None)
        try:
            kv = await self.storage.create(rt.key(meta.get("namespace"), meta["name"]),
                                           encode(obj))
        except KeyExistsError:
            await self._release(rt, allocated)
            raise status.already_exists(rt.group, rt.plural, meta["name"]) from None
        except BaseException:
            await self._release(rt, allocated)
            raise
        meta["resourceVersion"] = str(kv.mod_revision)
        return obj

    def _prepare_create(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        obj["apiVersion"], obj["kind"] = rt.group_version, rt.kind
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = utc_now()
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"):
            meta.pop(key, None)
        if rt.has_status or "spec" in obj:
            meta["generation"] = 1
        if rt.default:
            rt.default(obj)
        if rt.plural == "pods":
            obj["status"] = {"phase": "Pending", "qosClass": pod_qos_class(obj)}
        elif rt.plural == "namespaces":
            obj["status"] = {"phase": "Active"}
        elif rt.plural == "services":
            obj["status"] = {"loadBalancer": {}}
        elif rt.plural == "replicasets":
            obj["status"] = {"replicas": 0}  # required (not omitempty) in ReplicaSetStatus
        elif rt.has_status and rt.plural != "nodes":
            obj["status"] = {}

    def _validate(self, rt: ResourceType, new: Obj, old: Obj | None) -> None:
        if rt.validate is None:
            return
        causes = rt.validate(new, old)
        if causes:
            raise status.invalid(rt.kind, rt.group, (new.get("metadata") or {}).get("name", ""),
                                 causes)

    # --- update and patch -------------------------------------------------------------

    async def update(self, rt: ResourceType, namespace: str | None, name: str, obj: Obj, *,
                     subresource: str | None = None, dry_run: bool = False) -> WriteResult:
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
            if rt.create_on_update and subresource is None:
                meta["name"] = name
                meta.pop("resourceVersion", None)
                return WriteResult(await self.create(rt, namespace, obj, dry_run=dry_run),
                                   created=True)
            raise status.not_found(rt.group, rt.plural, name)
        return WriteResult(await self._write(rt, key, name, lambda _old: copy.deepcopy(obj),
                                             wanted_rv=wanted_rv, subresource=subresource,
                                             dry_run=dry_run, first=current))

    async def patch(self, rt: ResourceType, namespace: str | None, name: str,
                    patch_type: str, patch: Any, *, subresource: str | None = None,
                    dry_run: bool = False, patcher: Patcher | None = None) -> Obj:
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
                                 subresource=subresource, dry_run=dry_run, first=current)

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
                     wanted_ref: list[str | None] | None = None) -> Obj:
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
            if new == old:
                return old  # no-op: nothing written, resourceVersion unchanged
            if dry_run:
                return new
            if self._finalized(new):
                try:
                    return await self._remove(rt, key, new, expected=kv.mod_revision) or old
                except ConflictError as exc:
                    kv = exc.current
                    continue
            allocated = await self._allocate(rt, new, old)
            try:
                stored = await self.storage.update(key, encode(new),
                                                   expected_mod_revision=kv.mod_revision)
            except ConflictError as exc:
                await self._release(rt, allocated)
                if wanted_rv is not None:
                    raise status.conflict(rt.group, rt.plural, name,
                                          status.MODIFIED_CONFLICT) from None
                kv = exc.current
                continue
            except KeyNotFoundError:
                await self._release(rt, allocated)
                raise status.not_found(rt.group, rt.plural, name) from None
            await self._release(rt, service_allocation.released_by_update(new, old)
                                if rt.plural == "services" else [])
            new["metadata"]["resourceVersion"] = str(stored.mod_revision)
            return new
        raise status.conflict(rt.group, rt.plural, name, "too many concurrent updates")

    def _prepare_update(self, rt: ResourceType, new: Obj, old: Obj,
                        subresource: str | None) -> Obj:
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
        if rt.default:
            rt.default(new)
        if rt.has_status and subresource is None:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if rt.plural == "services":
            service_allocation.keep_allocations(new, old)
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
                     options: DeleteOptions) -> Obj:
        if rt.plural == "namespaces" and name in IMMORTAL_NAMESPACES:
            raise status.StatusError(403, "Forbidden", f'namespaces "{name}" is forbidden: '
                                     "this namespace may not be deleted",
                                     details={"name": name, "kind": "namespaces"})
        key = rt.key(namespace, name)
        for _ in range(_GUARANTEED_UPDATE_ATTEMPTS):
            kv = await self._read(key)
            if kv is None:
                raise status.not_found(rt.group, rt.plural, name)
            obj = decode(kv)
            meta = obj["metadata"]
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
            grace = self._grace_period(rt, obj, options)
            added = _add_propagation_finalizer(meta, options.propagation_policy)
            if not meta.get("finalizers") and grace == 0:
                if options.dry_run:
                    return obj
                if rt.plural == "namespaces" and not meta.get("deletionTimestamp"):
                    await self._mark_terminating(key, name, obj, expected=kv.mod_revision)
                    continue  # re-read; removing it then deletes its content
                try:
                    return await self._remove(rt, key, obj, expected=kv.mod_revision) or obj
                except ConflictError:
                    continue
            # Graceful or finalized deletion: mark it and let its owner finish. An object
            # already being deleted only changes for a shorter grace or a new finalizer.
            if meta.get("deletionTimestamp") and \
                    grace >= (meta.get("deletionGracePeriodSeconds") or 0):
                if not added:
                    return obj
            else:
                meta["deletionTimestamp"] = _now_plus(grace)
                meta["deletionGracePeriodSeconds"] = grace
                if "generation" in meta:
                    meta["generation"] = int(meta["generation"]) + 1
                if rt.plural == "namespaces":
                    obj.setdefault("status", {})["phase"] = "Terminating"
            if options.dry_run:
                return obj
            try:
                stored = await self.storage.update(key, encode(obj),
                                                   expected_mod_revision=kv.mod_revision)
            except ConflictError:
                continue
            meta["resourceVersion"] = str(stored.mod_revision)
            return obj
        raise status.conflict(rt.group, rt.plural, name, "too many concurrent updates")

    async def _mark_terminating(self, key: str, name: str, namespace: Obj, *,
                                expected: int) -> None:
        """First step of deleting a namespace: from now on nothing can be created in it
        (``_require_namespace`` refuses). A conflict is left to the caller's re-read."""
        namespace["metadata"]["deletionTimestamp"] = _now_plus(0)
        namespace["metadata"]["deletionGracePeriodSeconds"] = 0
        namespace.setdefault("status", {})["phase"] = "Terminating"
        with contextlib.suppress(ConflictError):
            await self.storage.update(key, encode(namespace), expected_mod_revision=expected)

    async def _empty_namespace(self, name: str) -> None:
        """Delete everything in a Terminating namespace before the namespace itself goes.

        So no object outlives its namespace, except one a finalizer holds: it is marked
        deleted and goes when the finalizer is removed. This is the namespace controller's
        work done inline, at once rather than gracefully.
        """
        now = DeleteOptions(grace_period_seconds=0)
        for rt in self.registry.resources:
            if not rt.namespaced:
                continue
            for item in (await self.storage.range(rt.namespace_prefix(name))).kvs:
                item_name = orjson.loads(item.value)["metadata"]["name"]
                with contextlib.suppress(status.StatusError):
                    await self.delete(rt, name, item_name, now)

    @staticmethod
    def _grace_period(rt: ResourceType, obj: Obj, options: DeleteOptions) -> int:
        """Pods bound to a node get a grace period; everything else goes at once."""
        if rt.plural == "namespaces":
            return 0
        if rt.plural != "pods":
            return 0
        spec, pod_status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or pod_status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if options.grace_period_seconds is not None:
            return max(0, options.grace_period_seconds)
        return int(spec.get("terminationGracePeriodSeconds", 30))

    async def _remove(self, rt: ResourceType, key: str, obj: Obj, *, expected: int
                      ) -> Obj | None:
        if rt.plural == "namespaces":
            await self._empty_namespace(obj["metadata"]["name"])
        try:
            deleted = await self.storage.delete(key, expected_mod_revision=expected)
        except KeyNotFoundError:
            return None
        obj["metadata"]["resourceVersion"] = str(deleted.mod_revision)
        if rt.plural == "services":
            await self._release(rt, service_allocation.allocations_of(obj))
        return obj

    # --- service allocations -----------------------------------------------------------

    async def _allocate(self, rt: ResourceType, new: Obj, old: Obj | None
                        ) -> list[tuple[str, Any]]:
        if rt.plural != "services":
            return []
        return await service_allocation.allocate(new, old, ips=self.service_ips,
                                                 ports=self.node_ports)

    async def _release(self, rt: ResourceType, allocations: list[tuple[str, Any]]) -> None:
        if rt.plural == "services" and allocations:
            await service_allocation.release(allocations, ips=self.service_ips,
                                             ports=self.node_ports)

