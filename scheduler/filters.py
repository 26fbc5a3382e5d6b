"""Filters: can this pod run on this node? Pure functions of (PodInfo, NodeInfo).

Each filter returns the reasons it rejects the node (empty: the node passes), worded as
kube-scheduler words them, because the reasons end up counted in the pod's
``PodScheduled`` message ("0/3 nodes are available: 1 node(s) didn't match Pod's node
affinity/selector, 2 Insufficient cpu."). They run in :data:`FILTERS` order and a node's
evaluation stops at the first filter that rejects it, as in the scheduler framework;
only the resource fit can give several reasons at once (one per short resource).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from apiclient.selectors import LabelSelector, Operator, SelectorError, make_requirement
from apiclient.taints import UNSCHEDULABLE_TAINT_KEY, tolerates, untolerated_taint

from .cache import NodeInfo, PodInfo

__all__ = ["FILTERS", "Filter", "failure_message", "filter_node", "node_affinity_matches"]

Filter = Callable[[PodInfo, NodeInfo], list[str]]
Obj = Mapping[str, Any]

NOT_READY = "node(s) were not ready"
UNSCHEDULABLE = "node(s) were unschedulable"
AFFINITY_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
PORTS_TAKEN = "node(s) didn't have free ports for the requested pod ports"
TOO_MANY_PODS = "Too many pods"
_UNSCHEDULABLE_TAINT = {"key": UNSCHEDULABLE_TAINT_KEY, "effect": "NoSchedule"}
_NODE_SELECTOR_OPERATORS = {
    "In": Operator.IN, "NotIn": Operator.NOT_IN, "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST, "Gt": Operator.GREATER_THAN,
    "Lt": Operator.LESS_THAN,
}


def node_ready(pod: PodInfo, node: NodeInfo) -> list[str]:
    return [] if node.ready else [NOT_READY]


def node_unschedulable(pod: PodInfo, node: NodeInfo) -> list[str]:
    """A cordoned node takes only pods tolerating node.kubernetes.io/unschedulable."""
    if not node.unschedulable:
        return []
    if any(tolerates(toleration, _UNSCHEDULABLE_TAINT) for toleration in pod.tolerations):
        return []
    return [UNSCHEDULABLE]


def taint_toleration(pod: PodInfo, node: NodeInfo) -> list[str]:
    taint = untolerated_taint(node.taints, pod.tolerations)
    if taint is None:
        return []
    return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"]


def _term_matches(term: Obj, labels: Mapping[str, str], node_name: str) -> bool:
    """One NodeSelectorTerm: all its expressions hold; a term with none matches nothing."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    try:
        requirements = [
            make_requirement(e.get("key", ""), _NODE_SELECTOR_OPERATORS[e.get("operator")],
                             e.get("values") or ())
            for e in expressions
        ]
        field_requirements = [
            make_requirement(f.get("key", ""), _NODE_SELECTOR_OPERATORS[f.get("operator")],
                             f.get("values") or ())
            for f in fields
        ]
    except (KeyError, SelectorError):
        return False  # an invalid term selects nothing, like Kubernetes
    return (LabelSelector(requirements).matches(labels)
            and LabelSelector(field_requirements).matches({"metadata.name": node_name}))


def node_affinity_matches(pod: PodInfo, node: NodeInfo) -> bool:
    labels = node.labels
    if any(labels.get(key) != value for key, value in pod.node_selector.items()):
        return False
    terms = pod.required_affinity_terms
    if terms is None:
        return True
    return any(_term_matches(term, labels, node.name) for term in terms)


def node_affinity(pod: PodInfo, node: NodeInfo) -> list[str]:
    return [] if node_affinity_matches(pod, node) else [AFFINITY_MISMATCH]


def _ports_conflict(wanted: tuple[str, str, int], used: tuple[str, str, int]) -> bool:
    (wanted_ip, wanted_protocol, wanted_port), (used_ip, used_protocol, used_port) = wanted, used
    if wanted_port != used_port or wanted_protocol != used_protocol:
        return False
    return wanted_ip == used_ip or "0.0.0.0" in (wanted_ip, used_ip)


def node_ports(pod: PodInfo, node: NodeInfo) -> list[str]:
    used = [port for port, count in node.host_ports.items() if count > 0]
    for wanted in pod.host_ports:
        if any(_ports_conflict(wanted, taken) for taken in used):
            return [PORTS_TAKEN]
    return []


def resources_fit(pod: PodInfo, node: NodeInfo) -> list[str]:
    """Pod count, then every requested resource against allocatable minus placed pods."""
    reasons = []
    if len(node.pods) + 1 > node.allocatable.get("pods", 0):
        reasons.append(TOO_MANY_PODS)
    for name, amount in sorted(pod.requests.items()):
        if amount > node.allocatable.get(name, 0) - node.requested.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


FILTERS: tuple[Filter, ...] = (
    node_ready,
    node_unschedulable,
    taint_toleration,
    node_affinity,
    node_ports,
    resources_fit,
)


def filter_node(pod: PodInfo, node: NodeInfo) -> list[str]:
    """The reasons of the first filter that rejects the node; empty if it fits."""
    for check in FILTERS:
        reasons = check(pod, node)
        if reasons:
            return reasons
    return []


def failure_message(node_count: int, reasons_by_node: Mapping[str, list[str]]) -> str:
    """kube-scheduler's FitError text: how many nodes failed for which reason."""
    if node_count == 0:
        return "no nodes available to schedule pods"
    histogram: Counter[str] = Counter()
    for reasons in reasons_by_node.values():
        histogram.update(reasons)
    parts = sorted(f"{count} {reason}" for reason, count in histogram.items())
    return f"0/{node_count} nodes are available: {', '.join(parts)}."
