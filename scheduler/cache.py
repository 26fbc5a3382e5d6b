"""The scheduler's view of the cluster: per node, what is allocatable and what is taken.

Kept incrementally from the pod and node informers (like kube-scheduler's cache), so a
scheduling decision costs O(nodes), never O(pods). A pod counts against a node from the
moment the scheduler *assumes* it there (before the binding is even sent) until it is
deleted or reaches a terminal phase; so a burst of decisions made faster than the
informer reports the bindings cannot overcommit a node.

Invariants:
- A pod key is placed on at most one node; placing it again moves it (its usage leaves
  the old node first).
- An assumed placement survives informer updates that still show the pod unbound (a
  status patch racing the binding); it ends when the binding is observed (the placement
  becomes an observed one), when the binding fails (``forget_assumed``), or when the pod
  is deleted or finishes.
- Quantities are integers: CPU in millicores, everything else in whole units (bytes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apiclient.meta import object_key
from apiclient.pods import is_ready, is_terminal
from apiclient.quantity import cpu_millis, memory_bytes

__all__ = ["NodeInfo", "PodInfo", "SchedulerCache", "pod_requests"]

Obj = Mapping[str, Any]
HostPort = tuple[str, str, int]  # (hostIP, protocol, hostPort)

# kube-scheduler's "non-zero" requests: a pod asking for nothing still counts this much
# when scoring, so empty pods spread instead of piling onto one node.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 2**20
_ANY_IP = "0.0.0.0"


def _amount(resource: str, quantity: Any) -> int:
    return cpu_millis(quantity) if resource == "cpu" else memory_bytes(quantity)


def _container_requests(container: Obj) -> dict[str, int]:
    requests = (container.get("resources") or {}).get("requests") or {}
    return {name: _amount(name, value) for name, value in requests.items()}


def pod_requests(spec: Obj) -> dict[str, int]:
    """Effective requests: max(sum of containers, largest init container) + overhead."""
    total: Counter[str] = Counter()
    for container in spec.get("containers") or []:
        total.update(_container_requests(container))
    for container in spec.get("initContainers") or []:
        for name, amount in _container_requests(container).items():
            total[name] = max(total[name], amount)
    for name, value in (spec.get("overhead") or {}).items():
        total[name] += _amount(name, value)
    return {name: amount for name, amount in total.items() if amount > 0}


def _host_ports(spec: Obj) -> frozenset[HostPort]:
    ports = set()
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for port in container.get("ports") or []:
            host_port = port.get("hostPort") or 0
            if host_port > 0:
                ports.add((port.get("hostIP") or _ANY_IP, port.get("protocol") or "TCP",
                           int(host_port)))
    return frozenset(ports)


def _controller_uid(metadata: Obj) -> str | None:
    for ref in metadata.get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


@dataclass(frozen=True)
class PodInfo:
    """What scheduling needs from a pod, parsed once per attempt."""

    key: str
    requests: Mapping[str, int]
    host_ports: frozenset[HostPort]
    node_selector: Mapping[str, str]
    required_affinity_terms: tuple[Obj, ...] | None  # None: no required node affinity
    tolerations: tuple[Obj, ...]
    controller_uid: str | None

    @classmethod
    def from_pod(cls, pod: Obj) -> PodInfo:
        spec = pod.get("spec") or {}
        node_affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
        required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        return cls(
            key=object_key(pod),
            requests=pod_requests(spec),
            host_ports=_host_ports(spec),
            node_selector=dict(spec.get("nodeSelector") or {}),
            required_affinity_terms=(None if required is None
                                     else tuple(required.get("nodeSelectorTerms") or ())),
            tolerations=tuple(spec.get("tolerations") or ()),
            controller_uid=_controller_uid(pod.get("metadata") or {}),
        )

    @property
    def non_zero_cpu(self) -> int:
        return self.requests.get("cpu") or DEFAULT_MILLI_CPU_REQUEST

    @property
    def non_zero_memory(self) -> int:
        return self.requests.get("memory") or DEFAULT_MEMORY_REQUEST


@dataclass
class NodeInfo:
    """One node and the pods placed on it (observed or assumed)."""

    name: str
    node: Obj | None = None  # None until the Node object is seen (pods may come first)
    allocatable: dict[str, int] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Obj, ...] = ()
    ready: bool = False
    unschedulable: bool = False
    requested: Counter[str] = field(default_factory=Counter)
    non_zero_cpu: int = 0
    non_zero_memory: int = 0
    pods: dict[str, PodInfo] = field(default_factory=dict)
    host_ports: Counter[HostPort] = field(default_factory=Counter)
    controller_pods: Counter[str] = field(default_factory=Counter)

    def set_node(self, node: Obj) -> None:
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        self.node = node
        self.allocatable = {name: _amount(name, value) for name, value in allocatable.items()}
        self.labels = dict((node.get("metadata") or {}).get("labels") or {})
        self.taints = tuple((node.get("spec") or {}).get("taints") or ())
        self.ready = is_ready(node)
        self.unschedulable = bool((node.get("spec") or {}).get("unschedulable"))

    def add_pod(self, pod: PodInfo) -> None:
        self.pods[pod.key] = pod
        self.requested.update(pod.requests)
        self.non_zero_cpu += pod.non_zero_cpu
        self.non_zero_memory += pod.non_zero_memory
        self.host_ports.update(pod.host_ports)
        if pod.controller_uid:
            self.controller_pods[pod.controller_uid] += 1

    def remove_pod(self, key: str) -> None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return
        self.requested.subtract(pod.requests)
        self.non_zero_cpu -= pod.non_zero_cpu
        self.non_zero_memory -= pod.non_zero_memory
        self.host_ports.subtract(pod.host_ports)
        if pod.controller_uid:
            self.controller_pods[pod.controller_uid] -= 1

    def scheduling_view(self) -> tuple[Any, ...]:
        """The node fields a filter reads: a change here may make a waiting pod fit."""
        return (sorted(self.allocatable.items()), sorted(self.labels.items()),
                repr(self.taints), self.ready, self.unschedulable)


class SchedulerCache:
    def __init__(self) -> None:
        self._nodes: dict[str, NodeInfo] = {}
        self._placements: dict[str, str] = {}  # pod key -> node name
        self._assumed: set[str] = set()

    # --- nodes ----------------------------------------------------------------------

    def _node_info(self, name: str) -> NodeInfo:
        info = self._nodes.get(name)
        if info is None:
            info = self._nodes[name] = NodeInfo(name)
        return info

    def set_node(self, node: Obj) -> bool:
        """Add or update a node; True when the change may let a waiting pod fit."""
        info = self._node_info(node["metadata"]["name"])
        before = info.scheduling_view() if info.node is not None else None
        info.set_node(node)
        return before != info.scheduling_view()

    def remove_node(self, name: str) -> None:
        info = self._nodes.get(name)
        if info is None:
            return
        if info.pods:  # its pods are still around: keep their usage, forget the node
            info.node = None
        else:
            del self._nodes[name]

    def nodes(self) -> list[NodeInfo]:
        """Nodes whose Node object is known, in name order (deterministic tie-breaks)."""
        return sorted((info for info in self._nodes.values() if info.node is not None),
                      key=lambda info: info.name)

    def node(self, name: str) -> NodeInfo | None:
        return self._nodes.get(name)

    # --- pods -----------------------------------------------------------------------

    def is_placed(self, key: str) -> bool:
        return key in self._placements

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def _place(self, pod: PodInfo, node_name: str) -> None:
        self._unplace(pod.key)
        self._placements[pod.key] = node_name
        self._node_info(node_name).add_pod(pod)

    def _unplace(self, key: str) -> None:
        node_name = self._placements.pop(key, None)
        self._assumed.discard(key)
        if node_name is None:
            return
        info = self._nodes[node_name]
        info.remove_pod(key)
        if info.node is None and not info.pods:
            del self._nodes[node_name]

    def observe_pod(self, pod: Obj) -> bool:
        """Record a pod from the informer; True when it released resources it held."""
        key = object_key(pod)
        node_name = (pod.get("spec") or {}).get("nodeName")
        held = key in self._placements
        if is_terminal(pod):
            self._unplace(key)
            return held
        if node_name:
            if self._placements.get(key) != node_name or key in self._assumed:
                self._place(PodInfo.from_pod(pod), node_name)
            return False
        # Unbound: keep an assumed placement (its binding is in flight).
        if held and key not in self._assumed:
            self._unplace(key)
            return True
        return False

    def delete_pod(self, pod: Obj) -> bool:
        """The pod is gone; True when it held resources."""
        key = object_key(pod)
        held = key in self._placements
        self._unplace(key)
        return held

    def assume(self, pod: PodInfo, node_name: str) -> None:
        self._place(pod, node_name)
        self._assumed.add(pod.key)

    def forget_assumed(self, key: str) -> None:
        """The binding failed: release what was assumed (an observed placement stays)."""
        if key in self._assumed:
            self._unplace(key)

    def placed_keys(self) -> Iterable[str]:
        return self._placements.keys()
