"""The garbage collector: ownerReferences with background, foreground and orphan deletion.

Kubernetes' ``pkg/controller/garbagecollector`` without its separate dependency graph: the
graph *is* the informers' stores, indexed by uid and by owner uid, so every decision is
re-derived from current state. A key names one object (``group/plural/namespace/name``).

What one reconcile of an object does:
- Being deleted with the ``orphan`` finalizer: remove this owner's reference from every
  dependent, then the finalizer.
- Being deleted with the ``foregroundDeletion`` finalizer: delete every dependent (those
  that own objects themselves in the foreground too), and remove the finalizer once no
  dependent with ``blockOwnerDeletion`` is left.

The finalizers come from the apiserver: a DELETE with ``propagationPolicy`` ``Orphan`` or
``Foreground`` adds them (``kubectl delete --cascade=orphan|foreground``).
- Otherwise, if it has owners and none of them exists any more (absent, or another object
  under the same name, i.e. a different uid), delete it (in the foreground when an owner
  waits for its dependents, else in the background). If some owners still exist, only the
  references to the vanished ones are removed.

Invariants:
- An owner is declared missing only after a live GET confirms it: the informer of the
  owner's kind may simply not have seen it yet (a pod can be watched before its brand-new
  ReplicaSet), and deleting on a stale cache would destroy live workloads.
- Deletions carry a uid precondition, reference removals the object's resourceVersion,
  so a recreated object of the same name is never hit.
- Owners of kinds keelson does not serve, and namespaced owners of cluster-scoped objects
  (an invalid reference), are never treated as missing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

from apiclient.client import ApiClient
from apiclient.controller import Controller, SharedInformers
from apiclient.errors import ConflictError, NotFoundError
from apiclient.informer import Informer
from apiclient.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    ENDPOINTS,
    ENDPOINTSLICES,
    LEASES,
    NODES,
    PODS,
    REPLICASETS,
    SERVICES,
    Resource,
    resource_for_kind,
)
from controllers.ownership import uid_of

__all__ = ["FOREGROUND", "MONITORED", "ORPHAN", "GarbageCollector"]

log = logging.getLogger(__name__)

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
# The kinds whose objects are watched as dependents and as owners.
MONITORED: tuple[Resource, ...] = (DEPLOYMENTS, REPLICASETS, PODS, SERVICES, ENDPOINTSLICES,
                                   ENDPOINTS, CONFIGMAPS, NODES, LEASES)
UID_INDEX = "gc/uid"
OWNER_INDEX = "gc/owner"


def _owner_uids(obj: Mapping) -> list[str]:
    return [ref["uid"] for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
            if ref.get("uid")]


def _finalizers(obj: Mapping) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def _being_deleted(obj: Mapping) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


class GarbageCollector(Controller):
    name = "garbagecollector"
    workers = 4

    def __init__(self, client: ApiClient, informers: SharedInformers) -> None:
        super().__init__(client, informers)
        self.monitors: dict[Resource, Informer] = {}
        for res in MONITORED:
            informer = informers.informer(res, indexers={
                UID_INDEX: lambda obj: [uid_of(obj)] if uid_of(obj) else [],
                OWNER_INDEX: _owner_uids})
            informer.add_handler(
                on_add=lambda obj, res=res: self._on_change(res, obj),
                on_update=lambda _old, new, res=res: self._on_change(res, new),
                on_delete=lambda obj, res=res: self._on_deleted(res, obj))
            self.monitors[res] = informer

    # --- keys and lookups ------------------------------------------------------------------

    @staticmethod
    def key_for(res: Resource, obj: Mapping) -> str:
        meta = obj.get("metadata") or {}
        return f"{res.group}/{res.plural}/{meta.get('namespace') or ''}/{meta.get('name')}"

    def _parse(self, key: str) -> tuple[Resource, str | None, str]:
        group, plural, namespace, name = key.split("/", 3)
        res = next(r for r in self.monitors if r.group == group and r.plural == plural)
        return res, namespace or None, name

    def _cached(self, res: Resource, namespace: str | None, name: str) -> dict | None:
        return self.monitors[res].store.get(f"{namespace}/{name}" if namespace else name)

    def _by_uid(self, uid: str) -> tuple[Resource, dict] | None:
        for res, informer in self.monitors.items():
            found = informer.store.by_index(UID_INDEX, uid)
            if found:
                return res, found[0]
        return None

    def _dependents(self, owner_uid: str) -> list[tuple[Resource, dict]]:
        return [(res, obj) for res, informer in self.monitors.items()
                for obj in informer.store.by_index(OWNER_INDEX, owner_uid)]

    # --- event handlers -------------------------------------------------------------------

    def _on_change(self, res: Resource, obj: dict) -> None:
        if _owner_uids(obj) or (_being_deleted(obj) and
                                {ORPHAN, FOREGROUND} & set(_finalizers(obj))):
            self.enqueue(self.key_for(res, obj))
        self._wake_waiting_owners(obj)

    def _on_deleted(self, _res: Resource, obj: dict) -> None:
        for dep_res, dependent in self._dependents(uid_of(obj)):
            self.enqueue(self.key_for(dep_res, dependent))
        self._wake_waiting_owners(obj)

    def _wake_waiting_owners(self, dependent: dict) -> None:
        """An owner deleting in the foreground re-checks when a dependent changes or goes."""
        for uid in _owner_uids(dependent):
            found = self._by_uid(uid)
            if found is not None and _being_deleted(found[1]):
                self.enqueue(self.key_for(*found))

    # --- reconcile ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        res, namespace, name = self._parse(key)
        obj = self._cached(res, namespace, name)
        if obj is None:
            return
        finalizers = _finalizers(obj)
        if _being_deleted(obj) and ORPHAN in finalizers:
            await self._orphan_dependents(res, obj)
            return
        if _being_deleted(obj) and FOREGROUND in finalizers:
            await self._delete_dependents_first(res, obj)
            return
        if _owner_uids(obj) and not _being_deleted(obj):
            await self._check_owners(res, obj)

    async def _orphan_dependents(self, res: Resource, owner: dict) -> None:
        owner_uid = uid_of(owner)
        for dep_res, dependent in self._dependents(owner_uid):
            await self._remove_references(dep_res, dependent, {owner_uid})
        await self._remove_finalizer(res, owner, ORPHAN)

    async def _delete_dependents_first(self, res: Resource, owner: dict) -> None:
        blocking = 0
        for dep_res, dependent in self._dependents(uid_of(owner)):
            ref = next(r for r in dependent["metadata"]["ownerReferences"]
                       if r.get("uid") == uid_of(owner))
            if ref.get("blockOwnerDeletion"):
                blocking += 1
            if not _being_deleted(dependent):
                await self._delete(dep_res, dependent,
                                   foreground=bool(self._dependents(uid_of(dependent))))
        if blocking == 0:
            await self._remove_finalizer(res, owner, FOREGROUND)

    async def _check_owners(self, res: Resource, obj: dict) -> None:
        namespace = obj["metadata"].get("namespace")
        solid, vanished, waiting = [], set(), []
        for ref in obj["metadata"]["ownerReferences"]:
            state = await self._owner_state(ref, namespace)
            if state == "missing":
                vanished.add(ref["uid"])
            elif state == "waiting":
                waiting.append(ref["uid"])
            else:  # present, or unknown: an owner that cannot be checked keeps the object
                solid.append(ref["uid"])
        if not vanished and not waiting:
            return
        if solid:
            await self._remove_references(res, obj, vanished | set(waiting))
            return
        # Every owner is gone or deleting in the foreground.
        log.info("garbage collector: deleting %s %s (its owners are gone%s)", res.kind,
                 obj["metadata"]["name"], ", in the foreground" if waiting else "")
        await self._delete(res, obj, foreground=bool(waiting)
                           and bool(self._dependents(uid_of(obj))))

    async def _owner_state(self, ref: Mapping, namespace: str | None) -> str:
        """present | waiting (deleting in the foreground) | missing | unknown."""
        try:
            owner_res = resource_for_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        except KeyError:
            return "unknown"
        if owner_res.namespaced and not namespace:
            return "unknown"  # a cluster-scoped object cannot have a namespaced owner
        owner_namespace = namespace if owner_res.namespaced else None
        owner = None
        if owner_res in self.monitors:
            owner = self._cached(owner_res, owner_namespace, ref.get("name", ""))
        if owner is None or uid_of(owner) != ref.get("uid"):
            try:
                owner = await self.client.get(owner_res, ref.get("name", ""),
                                              namespace=owner_namespace)
            except NotFoundError:
                return "missing"
        if uid_of(owner) != ref.get("uid"):
            return "missing"
        if _being_deleted(owner) and FOREGROUND in _finalizers(owner):
            return "waiting"
        return "present"

    # --- writes ---------------------------------------------------------------------------

    async def _delete(self, res: Resource, obj: dict, *, foreground: bool) -> None:
        meta = obj["metadata"]
        # NotFound: already gone; Conflict: the uid differs, so it is another object now.
        with contextlib.suppress(NotFoundError, ConflictError):
            await self.client.delete(res, meta["name"], namespace=meta.get("namespace"),
                                     propagation_policy="Foreground" if foreground
                                     else "Background",
                                     preconditions={"uid": meta["uid"]})

    async def _remove_references(self, res: Resource, obj: dict, uids: set[str]) -> None:
        meta = obj["metadata"]
        refs = [ref for ref in meta.get("ownerReferences") or [] if ref.get("uid") not in uids]
        with contextlib.suppress(NotFoundError):
            await self.client.patch(res, meta["name"],
                                    {"metadata": {"ownerReferences": refs or None,
                                                  "resourceVersion": meta["resourceVersion"]}},
                                    namespace=meta.get("namespace"))

    async def _remove_finalizer(self, res: Resource, obj: dict, finalizer: str) -> None:
        meta = obj["metadata"]
        remaining = [f for f in _finalizers(obj) if f != finalizer]
        with contextlib.suppress(NotFoundError):
            await self.client.patch(res, meta["name"],
                                    {"metadata": {"finalizers": remaining or None,
                                                  "resourceVersion": meta["resourceVersion"]}},
                                    namespace=meta.get("namespace"))
