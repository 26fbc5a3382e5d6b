"""The scheduler: gives every pending pod a node, through ``POST pods/{name}/binding``.

Shape (kube-scheduler's, small): informer handlers keep the :class:`SchedulerCache` and
queue pod keys; one worker runs the *scheduling cycle* — filter, score, assume — one pod
at a time, with no I/O, so every decision sees the previous ones; the *binding cycle*
(the HTTP call) runs concurrently in the background, bounded by ``bind_concurrency``.
A failed binding releases the assumed resources and retries the pod with backoff; a
bound pod gets a ``Scheduled`` event, as from kube-scheduler.

A pod that fits nowhere gets ``PodScheduled=False, reason Unschedulable`` with the
per-filter node counts and a ``FailedScheduling`` Warning event (both only when the
message changed, so retries do not spam), and waits in the unschedulable set. It is
retried when something that could make it fit happens — a node is added or its
scheduling view changes, a placed pod is deleted or finishes, its own spec or labels
change — and, level-triggered, every ``unschedulable_retry_seconds`` regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apiclient.client import ApiClient
from apiclient.controller import Controller, SharedInformers
from apiclient.errors import ApiError, NotFoundError, TransportError
from apiclient.events import EventRecorder
from apiclient.meta import object_key, split_key, utc_now
from apiclient.pods import is_terminal
from apiclient.resources import NODES, PODS

from .cache import NodeInfo, PodInfo, SchedulerCache
from .filters import failure_message, filter_node
from .scores import best_node

__all__ = ["DEFAULT_SCHEDULER_NAME", "Decision", "Scheduler", "decide"]

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER_NAME = "default-scheduler"
Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Decision:
    node: str | None  # None: unschedulable, see message
    message: str = ""


def decide(pod: PodInfo, nodes: Sequence[NodeInfo]) -> Decision:
    """Filter every node, score the feasible ones; pure, so it is tested directly."""
    feasible: list[NodeInfo] = []
    reasons_by_node: dict[str, list[str]] = {}
    for node in nodes:
        reasons = filter_node(pod, node)
        if reasons:
            reasons_by_node[node.name] = reasons
        else:
            feasible.append(node)
    if not feasible:
        return Decision(None, failure_message(len(nodes), reasons_by_node))
    return Decision(best_node(pod, feasible).name)


def _pod_scheduled_condition(pod: Obj) -> Obj:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled":
            return condition
    return {}


class Scheduler(Controller):
    name = "scheduler"
    workers = 1  # decisions are serial: each one must see the resources the last one took

    def __init__(self, client: ApiClient, informers: SharedInformers, *,
                 scheduler_name: str = DEFAULT_SCHEDULER_NAME, bind_concurrency: int = 32,
                 unschedulable_retry_seconds: float = 60.0) -> None:
        super().__init__(client, informers)
        self.scheduler_name = scheduler_name
        self._events = EventRecorder(client, component=scheduler_name)
        self.cache = SchedulerCache()
        self.unschedulable: set[str] = set()
        self._retry_seconds = unschedulable_retry_seconds
        self._bind_slots = asyncio.Semaphore(bind_concurrency)
        self._bindings: set[asyncio.Task[None]] = set()
        self._pods = informers.informer(PODS)
        self._pods.add_handler(on_add=self._pod_added, on_update=self._pod_updated,
                               on_delete=self._pod_deleted)
        nodes = informers.informer(NODES)
        nodes.add_handler(on_add=self._node_changed,
                          on_update=lambda old, new: self._node_changed(new),
                          on_delete=self._node_deleted)

    # --- informer handlers: keep the cache, queue keys --------------------------------

    def _wants(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return (not spec.get("nodeName")
                and (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == self.scheduler_name
                and not (pod.get("metadata") or {}).get("deletionTimestamp")
                and not is_terminal(pod))

    def _pod_added(self, pod: Obj) -> None:
        self.cache.observe_pod(pod)
        if self._wants(pod):
            self.enqueue(object_key(pod))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if self.cache.observe_pod(new):
            self._retry_unschedulable()
        key = object_key(new)
        if not self._wants(new):
            self.unschedulable.discard(key)
            return
        unchanged = (old.get("spec") == new.get("spec")
                     and (old.get("metadata") or {}).get("labels")
                     == (new.get("metadata") or {}).get("labels"))
        if key in self.unschedulable and unchanged:
            return  # e.g. our own status patch: nothing that could make it fit now
        self.enqueue(key)

    def _pod_deleted(self, pod: Obj) -> None:
        self.unschedulable.discard(object_key(pod))
        if self.cache.delete_pod(pod):
            self._retry_unschedulable()

    def _node_changed(self, node: Obj) -> None:
        if self.cache.set_node(node):
            self._retry_unschedulable()

    def _node_deleted(self, node: Obj) -> None:
        self.cache.remove_node(node["metadata"]["name"])

    def _retry_unschedulable(self) -> None:
        for key in self.unschedulable:
            self.enqueue(key)

    # --- the scheduling cycle --------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        pod = self._pods.store.get(key)
        if pod is None or not self._wants(pod):
            self.unschedulable.discard(key)
            return
        if self.cache.is_placed(key):
            return  # assumed: its binding is in flight
        info = PodInfo.from_pod(pod)
        decision = decide(info, self.cache.nodes())
        if decision.node is None:
            self.unschedulable.add(key)
            log.info("pod %s is unschedulable: %s", key, decision.message)
            await self._report_unschedulable(pod, decision.message)
            return
        self.unschedulable.discard(key)
        self.cache.assume(info, decision.node)
        task = asyncio.create_task(self._bind(pod, decision.node), name=f"bind-{key}")
        self._bindings.add(task)
        task.add_done_callback(self._bindings.discard)

    # --- the binding cycle -----------------------------------------------------------

    async def _bind(self, pod: Obj, node: str) -> None:
        metadata = pod["metadata"]
        key = object_key(pod)
        binding = {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": metadata["name"], "namespace": metadata["namespace"],
                         "uid": metadata.get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        async with self._bind_slots:
            try:
                await self.client.create(PODS, binding, namespace=metadata["namespace"],
                                         subresource="binding")
            except NotFoundError:  # deleted meanwhile; its delete event cleans up
                self.cache.forget_assumed(key)
                return
            except (ApiError, TransportError) as error:
                # A 409 means bound by someone else or being deleted: the informer will
                # show which before the retry.
                log.warning("binding %s to %s failed (will retry): %s", key, node, error)
                self.cache.forget_assumed(key)
                self.queue.add_rate_limited(key)
                return
            await self._record_event(pod, "Normal", "Scheduled",
                                     f"Successfully assigned {key} to {node}")

    # --- reporting -------------------------------------------------------------------

    async def _report_unschedulable(self, pod: Obj, message: str) -> None:
        current = _pod_scheduled_condition(pod)
        if (current.get("status"), current.get("reason"), current.get("message")) == \
                ("False", "Unschedulable", message):
            return
        namespace, name = split_key(object_key(pod))
        transition = current.get("lastTransitionTime") if current.get("status") == "False" \
            else None
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": message, "lastProbeTime": None,
                     "lastTransitionTime": transition or utc_now()}
        try:
            await self.client.patch(PODS, name, {"status": {"conditions": [condition]}},
                                    namespace=namespace, subresource="status",
                                    patch_type="strategic")
        except NotFoundError:
            return
        await self._record_event(pod, "Warning", "FailedScheduling", message)

    async def _record_event(self, pod: Obj, event_type: str, reason: str, message: str
                            ) -> None:
        await self._events.record(pod, event_type, reason, message)

    # --- running ---------------------------------------------------------------------

    async def run(self) -> None:
        retry = asyncio.create_task(self._retry_periodically(), name="scheduler-retry")
        try:
            await super().run()
        finally:
            for task in [retry, *self._bindings]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _retry_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._retry_seconds)
            self._retry_unschedulable()
