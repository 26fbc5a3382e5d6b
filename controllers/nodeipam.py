"""Node IPAM: give every node its own pod CIDR (``spec.podCIDR`` and ``spec.podCIDRs``).

Blocks of ``node_mask_size`` (/24) are cut from ``cluster_cidr`` (10.244.0.0/16) and handed
out lowest first. Which blocks are taken is re-derived from the nodes themselves on every
decision (so a restarted controller continues where it left off, and a node deleted frees
its block), plus the blocks this process assigned but has not yet seen come back through
the informer — so two nodes can never get the same block, even in a burst. A node that
already has a pod CIDR keeps it; the write is a read-modify-write with the node's
resourceVersion, so a concurrent assignment makes ours fail and retry instead of
overwriting.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from apiclient.client import ApiClient, retry_on_conflict
from apiclient.controller import Controller, SharedInformers
from apiclient.errors import NotFoundError
from apiclient.resources import NODES

__all__ = ["CidrAllocator", "CidrExhaustedError", "NodeIpamController", "node_pod_cidrs"]

log = logging.getLogger(__name__)

Obj = Mapping[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CidrExhaustedError(RuntimeError):
    """Every block of the cluster CIDR is in use."""


def node_pod_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") or {}
    cidrs = list(spec.get("podCIDRs") or [])
    if spec.get("podCIDR") and spec["podCIDR"] not in cidrs:
        cidrs.insert(0, spec["podCIDR"])
    return cidrs


class CidrAllocator:
    """The blocks of one cluster CIDR; pure bookkeeping, no I/O."""

    def __init__(self, cluster_cidr: str, *, node_mask_size: int = 24) -> None:
        self.cluster = ipaddress.ip_network(cluster_cidr)
        if node_mask_size < self.cluster.prefixlen:
            raise ValueError(f"node mask /{node_mask_size} is larger than the cluster CIDR "
                             f"{cluster_cidr}")
        self.node_mask_size = node_mask_size

    def blocks_in_use(self, cidrs: Iterable[str]) -> set[Network]:
        """The blocks of our range that these CIDRs overlap (foreign ranges ignored)."""
        used: set[Network] = set()
        for text in cidrs:
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                continue
            if network.version != self.cluster.version or not network.overlaps(self.cluster):
                continue
            if network.prefixlen >= self.node_mask_size:
                used.add(network.supernet(new_prefix=self.node_mask_size))
            else:  # a wider CIDR covers several of our blocks
                used.update(network.subnets(new_prefix=self.node_mask_size))
        return used

    def first_free(self, used: set[Network]) -> Network:
        for block in self.cluster.subnets(new_prefix=self.node_mask_size):
            if block not in used:
                return block
        raise CidrExhaustedError(f"no free /{self.node_mask_size} left in cluster CIDR "
                                 f"{self.cluster} ({len(used)} in use)")


class NodeIpamController(Controller):
    name = "node-ipam"
    workers = 1  # one decision at a time: each sees the blocks the previous one took

    def __init__(self, client: ApiClient, informers: SharedInformers, *,
                 cluster_cidr: str = "10.244.0.0/16", node_mask_size: int = 24) -> None:
        super().__init__(client, informers)
        self.allocator = CidrAllocator(cluster_cidr, node_mask_size=node_mask_size)
        self._pending: dict[str, str] = {}  # node -> block written, not yet seen back
        self._nodes = informers.informer(NODES)
        self._nodes.add_handler(on_add=self._node_event,
                                on_update=lambda old, new: self._node_event(new),
                                on_delete=self._node_deleted)

    def _node_event(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        if node_pod_cidrs(node):
            self._pending.pop(name, None)
        else:
            self.enqueue(name)

    def _node_deleted(self, node: Obj) -> None:
        self._pending.pop(node["metadata"]["name"], None)

    def _used(self) -> set[Network]:
        cidrs = [cidr for node in self._nodes.store.list() for cidr in node_pod_cidrs(node)]
        return self.allocator.blocks_in_use([*cidrs, *self._pending.values()])

    async def reconcile(self, key: str) -> None:
        node = self._nodes.store.get(key)
        if node is None or node_pod_cidrs(node):
            return
        block = str(self.allocator.first_free(self._used()))
        self._pending[key] = block  # reserved before any await: no one else gets it

        async def attempt() -> str | None:
            try:
                current = await self.client.get(NODES, key)
            except NotFoundError:
                return None
            if node_pod_cidrs(current):
                return None  # assigned meanwhile (by us or someone else): keep that
            current.setdefault("spec", {}).update(podCIDR=block, podCIDRs=[block])
            await self.client.replace(NODES, current)
            return block

        try:
            assigned = await retry_on_conflict(attempt)
        except BaseException:
            self._pending.pop(key, None)
            raise
        if assigned is None:
            self._pending.pop(key, None)
        else:
            log.info("node %s: pod CIDR %s", key, assigned)
