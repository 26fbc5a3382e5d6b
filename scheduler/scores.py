"""Scores: among the nodes that fit, which is best? Pure functions, 0..100 per node.

Two scores, weighted and summed like the scheduler framework's plugins:
- least allocated (NodeResourcesFit, LeastAllocated strategy, weight 1): the share of
  CPU and memory still free after placing the pod, averaged. Pods without requests count
  with kube-scheduler's non-zero defaults (100m CPU, 200Mi) so they spread too.
- spreading (SelectorSpread, weight 2): fewer pods of the same controller (ReplicaSet)
  on a node scores higher, so replicas land on different nodes.
Ties go to the node that sorts first by name, so a decision is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

from .cache import NodeInfo, PodInfo

__all__ = ["LEAST_ALLOCATED_WEIGHT", "MAX_SCORE", "SPREAD_WEIGHT", "best_node", "least_allocated",
           "spread_scores"]

MAX_SCORE = 100.0
LEAST_ALLOCATED_WEIGHT = 1.0
SPREAD_WEIGHT = 2.0


def _free_share(allocatable: int, requested: int) -> float:
    if allocatable <= 0 or requested > allocatable:
        return 0.0
    return (allocatable - requested) * MAX_SCORE / allocatable


def least_allocated(pod: PodInfo, node: NodeInfo) -> float:
    cpu = _free_share(node.allocatable.get("cpu", 0), node.non_zero_cpu + pod.non_zero_cpu)
    memory = _free_share(node.allocatable.get("memory", 0),
                         node.non_zero_memory + pod.non_zero_memory)
    return (cpu + memory) / 2


def spread_scores(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Per node: MAX * (most siblings on any node - siblings here) / most siblings."""
    if pod.controller_uid is None:
        return [MAX_SCORE] * len(nodes)
    counts = [node.controller_pods.get(pod.controller_uid, 0) for node in nodes]
    most = max(counts, default=0)
    if most == 0:
        return [MAX_SCORE] * len(nodes)
    return [MAX_SCORE * (most - count) / most for count in counts]


def best_node(pod: PodInfo, nodes: Sequence[NodeInfo]) -> NodeInfo:
    """The highest weighted score; the first in the given order on a tie."""
    if not nodes:
        raise ValueError("best_node needs at least one feasible node")
    spread = spread_scores(pod, nodes)
    best, best_score = nodes[0], -1.0
    for node, spread_score in zip(nodes, spread, strict=True):
        score = LEAST_ALLOCATED_WEIGHT * least_allocated(pod, node) + SPREAD_WEIGHT * spread_score
        if score > best_score:
            best, best_score = node, score
    return best
