"""Node lifecycle: a node that stops heartbeating is marked unreachable and drained.

A node's heartbeat is its Lease in ``kube-node-lease`` (renewed by the agent every 10 s)
or its Ready condition's ``lastHeartbeatTime``. Like Kubernetes' node lifecycle
controller, time is measured on *our* clock from the moment we saw the heartbeat change,
never by comparing the node's timestamps with ours, so clock skew cannot fake an outage;
a node we have just started watching gets a full grace period.

Silent for ``grace_period_seconds`` (40 s):
- its conditions become Unknown (reason NodeStatusUnknown, "Kubelet stopped posting node
  status."), through ``nodes/status``;
- it gets the ``node.kubernetes.io/unreachable`` taints, NoSchedule (the scheduler stops
  using it) and NoExecute (with ``timeAdded``);
- its pods' Ready condition becomes False, so EndpointSlices stop sending them traffic;
- each pod is evicted (deleted) once its toleration of unreachable:NoExecute runs out,
  counted from the taint's ``timeAdded``; no matching toleration means 300 s (what
  Kubernetes' DefaultTolerationSeconds admission would have added).
Heartbeating again (a change we saw, not merely a node found when we started): the taints
go; the agent itself reports Ready again. So a controller restart neither clears the taints
of a node that is still silent nor restarts its pods' eviction clocks (``timeAdded`` stays).

Each node has at most one pending re-check timer (the next expiry or eviction), so a
node's work is bounded however often its lease is renewed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apiclient.client import ApiClient, retry_on_conflict
from apiclient.controller import Controller, SharedInformers
from apiclient.errors import NotFoundError
from apiclient.meta import object_key, parse_time, split_key, utc_now
from apiclient.pods import is_active, is_terminal, ready_condition
from apiclient.resources import LEASES, NODES, PODS
from apiclient.taints import UNREACHABLE_TAINT_KEY, toleration_seconds

__all__ = ["LEASE_NAMESPACE", "NodeLifecycleController", "eviction_due", "unknown_conditions"]

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
UNKNOWN_REASON = "NodeStatusUnknown"
UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
NEVER_UPDATED_REASON = "NodeStatusNeverUpdated"
NEVER_UPDATED_MESSAGE = "Kubelet never posted node status."
_POD_NODE_INDEX = "nodelifecycle:node"
_RECHECK_SLACK_SECONDS = 0.1

Obj = Mapping[str, Any]


def _pod_node(pod: Obj) -> list[str]:
    node = (pod.get("spec") or {}).get("nodeName")
    return [node] if node else []


def unknown_conditions(node: Obj, *, now: str) -> list[dict]:
    """The condition patch that marks a silent node: every condition Unknown.

    Empty when Ready is already Unknown (nothing to write). Heartbeat times are kept.
    """
    conditions = (node.get("status") or {}).get("conditions") or []
    if (ready_condition(node) or {}).get("status") == "Unknown":
        return []
    if not conditions:
        return [{"type": "Ready", "status": "Unknown", "reason": NEVER_UPDATED_REASON,
                 "message": NEVER_UPDATED_MESSAGE, "lastTransitionTime": now}]
    return [{**condition, "status": "Unknown", "reason": UNKNOWN_REASON,
             "message": UNKNOWN_MESSAGE, "lastTransitionTime": now}
            for condition in conditions if condition.get("status") != "Unknown"]


def _is_unreachable_taint(taint: Obj) -> bool:
    return taint.get("key") == UNREACHABLE_TAINT_KEY


def eviction_due(pod: Obj, taint: Obj, *, now: datetime) -> float | None:
    """Seconds until ``pod`` must leave a node with this NoExecute taint (<= 0: now);
    None if it tolerates the taint forever."""
    seconds = toleration_seconds((pod.get("spec") or {}).get("tolerations") or (), taint)
    if seconds is None:
        return None
    added_text = taint.get("timeAdded")
    added = parse_time(added_text) if added_text else now
    return (added - now).total_seconds() + seconds


@dataclass(frozen=True)
class _Heartbeat:
    signal: tuple[Any, Any]  # (lease renewTime, Ready lastHeartbeatTime)
    seen_at: float  # our clock when the signal last changed (or when we first saw it)
    renewed: bool  # the signal changed while we watched


class NodeLifecycleController(Controller):
    name = "node-lifecycle"

    def __init__(self, client: ApiClient, informers: SharedInformers, *,
                 grace_period_seconds: float = 40.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(client, informers)
        self.grace_period_seconds = grace_period_seconds
        self._clock = clock
        self._heartbeats: dict[str, _Heartbeat] = {}
        self._rechecks: dict[str, asyncio.TimerHandle] = {}
        self._unreachable: set[str] = set()
        self._nodes = informers.informer(NODES)
        self._leases = informers.informer(LEASES)
        self._pods = informers.informer(PODS, indexers={_POD_NODE_INDEX: _pod_node})
        self._nodes.add_handler(on_add=self._node_event,
                                on_update=lambda old, new: self._node_event(new),
                                on_delete=self._node_event)
        self._leases.add_handler(on_add=self._lease_event,
                                 on_update=lambda old, new: self._lease_event(new),
                                 on_delete=self._lease_event)
        self._pods.add_handler(on_add=self._pod_event,
                               on_update=lambda old, new: self._pod_event(new))

    # --- handlers --------------------------------------------------------------------

    def _node_event(self, node: Obj) -> None:
        self.enqueue(node["metadata"]["name"])

    def _lease_event(self, lease: Obj) -> None:
        if lease["metadata"].get("namespace") == LEASE_NAMESPACE:
            self.enqueue(lease["metadata"]["name"])

    def _pod_event(self, pod: Obj) -> None:
        for node in _pod_node(pod):
            if node in self._unreachable:  # a pod that still needs marking or evicting
                self.enqueue(node)

    # --- reconcile -------------------------------------------------------------------

    def _silent_for(self, name: str, node: Obj) -> tuple[float, bool]:
        """Seconds since we saw this node's heartbeat change, and whether we have seen it
        change at all (rather than only found it when we started)."""
        lease = self._leases.store.get(f"{LEASE_NAMESPACE}/{name}") or {}
        signal = ((lease.get("spec") or {}).get("renewTime"),
                  (ready_condition(node) or {}).get("lastHeartbeatTime"))
        now = self._clock()
        seen = self._heartbeats.get(name)
        if seen is None:
            seen = self._heartbeats[name] = _Heartbeat(signal, now, renewed=False)
        elif seen.signal != signal:
            seen = self._heartbeats[name] = _Heartbeat(signal, now, renewed=True)
        return now - seen.seen_at, seen.renewed

    async def reconcile(self, key: str) -> None:
        node = self._nodes.store.get(key)
        if node is None:
            self._forget(key)
            return
        silent_for, renewed = self._silent_for(key, node)
        if silent_for < self.grace_period_seconds:
            self._unreachable.discard(key)
            if renewed:  # after our restart, a tainted node keeps its taints until it beats
                await self._remove_unreachable_taints(key, node)
            self._recheck(key, after=self.grace_period_seconds - silent_for)
            return
        if key not in self._unreachable:
            log.warning("node %s: no heartbeat for %.0fs, marking it unreachable", key,
                        silent_for)
        self._unreachable.add(key)
        await self._mark_unknown(key, node)
        node = await self._add_unreachable_taints(key, node)
        pods = self._pods.store.by_index(_POD_NODE_INDEX, key)
        await self._mark_pods_not_ready(pods)
        next_eviction = await self._evict(node, pods)
        if next_eviction is not None:
            self._recheck(key, after=next_eviction)

    def _forget(self, name: str) -> None:
        self._heartbeats.pop(name, None)
        self._unreachable.discard(name)
        handle = self._rechecks.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _recheck(self, name: str, *, after: float) -> None:
        """Arm this node's single re-check timer (replacing an earlier one)."""
        handle = self._rechecks.pop(name, None)
        if handle is not None:
            handle.cancel()
        self._rechecks[name] = asyncio.get_running_loop().call_later(
            max(0.0, after) + _RECHECK_SLACK_SECONDS, self.enqueue, name)

    # --- writes ----------------------------------------------------------------------

    async def _mark_unknown(self, name: str, node: Obj) -> None:
        conditions = unknown_conditions(node, now=utc_now())
        if conditions:
            await self.client.patch(NODES, name, {"status": {"conditions": conditions}},
                                    subresource="status", patch_type="strategic")

    async def _update_taints(self, name: str, change: Callable[[list[dict]], list[dict]]
                             ) -> dict | None:
        """Read-modify-write of spec.taints with conflict retries; None if the node is gone."""

        async def attempt() -> dict | None:
            try:
                node = await self.client.get(NODES, name)
            except NotFoundError:
                return None
            taints = list((node.get("spec") or {}).get("taints") or [])
            wanted = change(taints)
            if wanted == taints:
                return node
            node.setdefault("spec", {})["taints"] = wanted
            return await self.client.replace(NODES, node)

        return await retry_on_conflict(attempt)

    async def _add_unreachable_taints(self, name: str, node: Obj) -> Obj:
        present = {t.get("effect") for t in (node.get("spec") or {}).get("taints") or []
                   if _is_unreachable_taint(t)}
        if present >= {"NoSchedule", "NoExecute"}:
            return node

        def add(taints: list[dict]) -> list[dict]:
            have = {t.get("effect") for t in taints if _is_unreachable_taint(t)}
            added = [{"key": UNREACHABLE_TAINT_KEY, "effect": effect, "timeAdded": utc_now()}
                     for effect in ("NoSchedule", "NoExecute") if effect not in have]
            return taints + added

        return await self._update_taints(name, add) or node

    async def _remove_unreachable_taints(self, name: str, node: Obj) -> None:
        if not any(_is_unreachable_taint(t) for t in (node.get("spec") or {}).get("taints") or []):
            return
        log.info("node %s: heartbeat is back, removing the unreachable taints", name)
        await self._update_taints(
            name, lambda taints: [t for t in taints if not _is_unreachable_taint(t)])

    async def _mark_pods_not_ready(self, pods: list[dict]) -> None:
        for pod in pods:
            if (ready_condition(pod) or {}).get("status") == "False" or is_terminal(pod):
                continue
            namespace, name = split_key(object_key(pod))
            condition = {"type": "Ready", "status": "False", "reason": "NodeUnreachable",
                         "lastProbeTime": None, "lastTransitionTime": utc_now()}
            try:
                await self.client.patch(PODS, name, {"status": {"conditions": [condition]}},
                                        namespace=namespace, subresource="status",
                                        patch_type="strategic")
            except NotFoundError:
                continue

    async def _evict(self, node: Obj, pods: list[dict]) -> float | None:
        """Delete the pods whose toleration ran out; seconds until the next one is due."""
        taint = next((t for t in (node.get("spec") or {}).get("taints") or []
                      if _is_unreachable_taint(t) and t.get("effect") == "NoExecute"), None)
        if taint is None:
            return None
        now = datetime.now(UTC)
        next_due: float | None = None
        for pod in pods:
            if not is_active(pod):
                continue
            due = eviction_due(pod, taint, now=now)
            if due is None:
                continue
            if due > 0:
                next_due = due if next_due is None else min(next_due, due)
                continue
            namespace, name = split_key(object_key(pod))
            log.info("evicting pod %s/%s from unreachable node %s", namespace, name,
                     node["metadata"]["name"])
            try:
                await self.client.delete(PODS, name, namespace=namespace,
                                         preconditions={"uid": pod["metadata"]["uid"]})
            except NotFoundError:
                continue
        return next_due

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            for handle in self._rechecks.values():
                handle.cancel()
            self._rechecks.clear()
