"""Deleting stale UDP conntrack entries after endpoint changes (kube-proxy semantics).

UDP has no connection teardown: a conntrack entry keeps DNATing a client's packets to the
endpoint it first picked, even after that endpoint is gone, and an entry created while the
Service had no endpoints keeps packets away from the new DNAT rules. So:

* an endpoint that stopped being used by a UDP service port: delete the entries whose
  original destination is that port's service IP / external IP / node port *and* whose DNAT
  destination is the removed endpoint;
* a UDP service port that went from 0 to N endpoints: delete the entries whose original
  destination is that service IP and port (they are the rejected ones).

Invariant: every deletion names the protocol, an original destination (IP or node port)
and, for removed endpoints, the NAT destination, so unrelated flows are never touched.
``stale_flows`` is a pure diff; ``delete`` runs the conntrack tool.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from proxy import commands
from proxy.servicemodel import ServicePort

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UdpTarget:
    """What one UDP service port sends traffic to, as far as conntrack cleanup cares."""

    addresses: tuple[str, ...]  # cluster IP, external IPs, load-balancer IPs
    port: int
    node_port: int
    endpoint_ips: frozenset[str]

    @classmethod
    def of(cls, port: ServicePort, endpoint_ips: Iterable[str]) -> UdpTarget:
        addresses = (port.cluster_ip or "", *port.external_ips, *port.load_balancer_ips)
        return cls(tuple(a for a in addresses if a), port.port, port.node_port,
                   frozenset(endpoint_ips))  # fmt: skip


@dataclass(frozen=True, order=True)
class StaleFlow:
    """One ``conntrack -D`` filter; ``dst_nat`` None means "any endpoint"."""

    orig_dst: str | None
    dport: int
    dst_nat: str | None = None

    def sort_key(self) -> tuple[str, int, str]:
        """Flows sort by this (orig_dst and dst_nat may be None, which does not compare)."""
        return (self.orig_dst or "", self.dport, self.dst_nat or "")

    def argv(self) -> list[str]:
        argv = ["conntrack", "-D", "-p", "udp"]
        if self.orig_dst:
            argv += ["--orig-dst", self.orig_dst]
        argv += ["--dport", str(self.dport)]
        if self.dst_nat:
            argv += ["--dst-nat", self.dst_nat]
        return argv


def _flows_for(target: UdpTarget, dst_nat: str | None) -> list[StaleFlow]:
    flows = [StaleFlow(address, target.port, dst_nat) for address in target.addresses]
    if target.node_port:
        flows.append(StaleFlow(None, target.node_port, dst_nat))
    return flows


def stale_flows(old: Mapping[str, UdpTarget], new: Mapping[str, UdpTarget]) -> list[StaleFlow]:
    """The deletions needed when UDP service ports change from ``old`` to ``new``."""
    flows: set[StaleFlow] = set()
    for key, before in old.items():
        after = new.get(key)
        remaining = after.endpoint_ips if after else frozenset()
        for ip in before.endpoint_ips - remaining:
            flows.update(_flows_for(before, ip))
    for key, after in new.items():
        before = old.get(key)
        if after.endpoint_ips and (before is None or not before.endpoint_ips):
            flows.update(_flows_for(after, None))
    return sorted(flows, key=StaleFlow.sort_key)


async def delete(flows: Iterable[StaleFlow], *, netns: str | None = None) -> bool:
    """Delete matching entries; True unless the tool itself failed (1 = nothing matched)."""
    ok = True
    for flow in flows:
        result = await commands.run(flow.argv(), netns=netns)
        if result.returncode not in (0, 1):
            ok = False
            log.warning("%s failed: %s", " ".join(flow.argv()), result.stderr.decode().strip())
    return ok
