"""The ReplicaSet controller: keep ``spec.replicas`` pods from the template running.

Kubernetes' ``replica_set.go`` in small. Each reconcile re-derives the ReplicaSet's pods
from the pod informer (claiming: adopt matching orphans, release owned pods that stopped
matching), then creates or deletes the difference and writes ``/status``.

Invariants:
- Pods are created with ``generateName: <rs>-`` and a controller ownerReference
  (``blockOwnerDeletion``), in slow-start batches (1, 2, 4, ...) that stop at the first
  failure, so a broken template costs one failed request, not ``replicas`` of them.
- After creating or deleting, the loop does not act again on the informer's store until
  it has seen its own writes (:class:`~controllers.ownership.Expectations`).
- Surplus pods are chosen by :func:`deletion_order`: unscheduled before scheduled, pending
  before running, not ready before ready, ready for less time before longer, more restarts
  before fewer, newest before oldest (``ActivePodsWithRanks``, without the co-location rank).
- A ReplicaSet being deleted creates and deletes nothing; it only reports status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from apiclient.client import ApiClient
from apiclient.controller import Controller, SharedInformers
from apiclient.errors import NotFoundError
from apiclient.meta import object_key, owner_reference, parse_time, split_key
from apiclient.pods import (
    is_active,
    is_ready,
    is_terminal,
    ready_since,
    seconds_until_available,
)
from apiclient.resources import PODS, REPLICASETS
from apiclient.selectors import SelectorError, label_selector_from_spec
from apiclient.store import NAMESPACE_INDEX, namespace_index
from controllers.ownership import Expectations, claim, controller_of, labels_of

__all__ = ["ReplicaSetController", "deletion_order", "pod_from_template", "replicaset_status"]

log = logging.getLogger(__name__)

# Most pods one reconcile creates or deletes (client-go's burstReplicas).
BURST_REPLICAS = 500
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def pod_from_template(rs: Mapping) -> dict:
    """The pod a ReplicaSet creates: its template with generateName and an owner."""
    template = (rs.get("spec") or {}).get("template") or {}
    template_meta = template.get("metadata") or {}
    meta = rs["metadata"]
    pod_meta: dict = {
        "generateName": f"{meta['name']}-",
        "namespace": meta["namespace"],
        "labels": dict(template_meta.get("labels") or {}),
        "ownerReferences": [owner_reference({**rs, "apiVersion": REPLICASETS.api_version,
                                             "kind": REPLICASETS.kind})],
    }
    for key in ("annotations", "finalizers"):
        if template_meta.get(key):
            pod_meta[key] = template_meta[key]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": dict(template.get("spec") or {})}


def deletion_order(pod: Mapping) -> tuple:
    """Sort key: the pods to delete first sort first."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    since = ready_since(pod)
    restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
    return (
        bool(spec.get("nodeName")),
        _PHASE_RANK.get(status.get("phase") or "Pending", 0),
        is_ready(pod),
        # Ready for less time first: a later "since" sorts first.
        -(since.timestamp() if since else 0.0),
        -restarts,
        -_created_at(pod),
    )


def _created_at(pod: Mapping) -> float:
    try:
        return parse_time((pod.get("metadata") or {}).get("creationTimestamp") or "").timestamp()
    except ValueError:
        return 0.0


def replicaset_status(rs: Mapping, pods: list[dict], *, now: datetime) -> dict:
    """The status the pods add up to (every count over active pods only)."""
    spec = rs.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    active = [pod for pod in pods if is_active(pod)]
    status = dict(rs.get("status") or {})
    status.update(
        replicas=len(active),
        fullyLabeledReplicas=sum(
            1 for pod in active
            if all(labels_of(pod).get(k) == v for k, v in template_labels.items())),
        readyReplicas=sum(1 for pod in active if is_ready(pod)),
        availableReplicas=sum(
            1 for pod in active if seconds_until_available(pod, min_ready, now) == 0.0),
        observedGeneration=(rs.get("metadata") or {}).get("generation", 0),
    )
    return status


class ReplicaSetController(Controller):
    name = "replicaset"
    workers = 4

    def __init__(self, client: ApiClient, informers: SharedInformers) -> None:
        super().__init__(client, informers)
        self.replicasets = informers.informer(REPLICASETS,
                                              indexers={NAMESPACE_INDEX: namespace_index})
        self.pods = informers.informer(PODS, indexers={NAMESPACE_INDEX: namespace_index})
        self.expectations = Expectations()
        self.replicasets.add_handler(
            on_add=self._enqueue_object, on_update=lambda _old, new: self._enqueue_object(new),
            on_delete=self._on_replicaset_deleted)
        self.pods.add_handler(on_add=self._on_pod, on_update=self._on_pod_update,
                              on_delete=self._on_pod)

    # --- event handlers: only find the keys to reconcile -------------------------------

    def _enqueue_object(self, obj: dict) -> None:
        self.enqueue(object_key(obj))

    def _on_replicaset_deleted(self, rs: dict) -> None:
        self.expectations.forget(object_key(rs))

    def _on_pod(self, pod: dict) -> None:
        for key in self._owners_of(pod):
            self.enqueue(key)

    def _on_pod_update(self, old: dict, new: dict) -> None:
        for key in {*self._owners_of(old), *self._owners_of(new)}:
            self.enqueue(key)

    def _owners_of(self, pod: dict) -> list[str]:
        """The ReplicaSet controlling the pod or, for an orphan, every one that could adopt it."""
        namespace = pod["metadata"].get("namespace", "")
        ref = controller_of(pod)
        if ref is not None:
            return [f"{namespace}/{ref['name']}"] if ref.get("kind") == "ReplicaSet" else []
        keys = []
        for rs in self.replicasets.store.by_index(NAMESPACE_INDEX, namespace):
            try:
                selector = label_selector_from_spec((rs.get("spec") or {}).get("selector"))
            except SelectorError:
                continue
            if selector.matches(labels_of(pod)):
                keys.append(object_key(rs))
        return keys

    # --- the loop -----------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        rs = self.replicasets.store.get(key)
        if rs is None:
            return
        namespace, _ = split_key(key)
        selector = label_selector_from_spec((rs.get("spec") or {}).get("selector"))
        candidates = [pod for pod in self.pods.store.by_index(NAMESPACE_INDEX, namespace or "")
                      if not is_terminal(pod)]
        pods = await claim(self.client, PODS, rs, selector, candidates)
        active = [pod for pod in pods if is_active(pod)]
        if self.expectations.satisfied(key, self.pods.store) and \
                not rs["metadata"].get("deletionTimestamp"):
            await self._manage_replicas(key, rs, active)
        now = datetime.now(UTC)
        status = replicaset_status(rs, pods, now=now)
        if status != rs.get("status"):
            await self._write_status(rs, status)
        self._recheck_availability(key, rs, active, now)

    async def _manage_replicas(self, key: str, rs: dict, active: list[dict]) -> None:
        wanted = int((rs.get("spec") or {}).get("replicas", 1))
        diff = wanted - len(active)
        if diff > 0:
            await self._create_pods(key, rs, min(diff, BURST_REPLICAS))
        elif diff < 0:
            doomed = sorted(active, key=deletion_order)[:min(-diff, BURST_REPLICAS)]
            await self._delete_pods(key, doomed)

    async def _create_pods(self, key: str, rs: dict, count: int) -> None:
        namespace = rs["metadata"]["namespace"]
        batch = 1
        remaining = count
        while remaining > 0:
            size = min(batch, remaining)
            results = await asyncio.gather(
                *(self.client.create(PODS, pod_from_template(rs), namespace=namespace)
                  for _ in range(size)), return_exceptions=True)
            created = [object_key(pod) for pod in results if isinstance(pod, dict)]
            self.expectations.expect(key, creates=created)
            errors = [error for error in results if isinstance(error, BaseException)]
            if errors:
                raise errors[0]
            remaining -= size
            batch *= 2

    async def _delete_pods(self, key: str, pods: list[dict]) -> None:
        self.expectations.expect(key, deletes=[object_key(pod) for pod in pods])

        async def delete(pod: dict) -> None:
            meta = pod["metadata"]
            with contextlib.suppress(NotFoundError):
                await self.client.delete(PODS, meta["name"], namespace=meta["namespace"],
                                         preconditions={"uid": meta["uid"]})

        results = await asyncio.gather(*(delete(pod) for pod in pods), return_exceptions=True)
        errors = [error for error in results if isinstance(error, BaseException)]
        if errors:
            self.expectations.forget(key)
            raise errors[0]

    async def _write_status(self, rs: dict, status: dict) -> None:
        meta = rs["metadata"]
        with contextlib.suppress(NotFoundError):
            await self.client.patch(REPLICASETS, meta["name"], {"status": status},
                                    namespace=meta["namespace"], subresource="status")

    def _recheck_availability(self, key: str, rs: dict, active: list[dict],
                              now: datetime) -> None:
        """Pods ready but not yet for minReadySeconds become available without an event:
        look again when the first of them gets there."""
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready <= 0:
            return
        waits = [wait for pod in active
                 if (wait := seconds_until_available(pod, min_ready, now))]
        if waits:
            self.enqueue(key, after=min(waits) + 0.05)

