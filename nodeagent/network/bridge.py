"""The pod network: one Linux bridge per node and one veth pair per pod.

Layout (the same as the CNI ``bridge`` plugin): bridge ``keelson0`` carries the gateway, the
first host address of the node's pod CIDR, so the host reaches every pod over a connected
route. Each pod gets a veth pair; the host end (``keel`` + 11 hex of sha256(pod uid), so
teardown after an agent restart needs nothing but the uid) is a bridge port with hairpin
on, the other end is moved into the sandbox's namespace and becomes ``eth0`` with the pod IP
and a default route via the gateway.

``host_netns`` is None in production; functional tests pass a throw-away namespace so the
real host is never touched. Set-up is all-or-nothing: on any failure the host veth is
deleted (which also destroys the peer) before the error propagates.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from nodeagent.network import netlink

DEFAULT_BRIDGE = "keelson0"
VETH_PREFIX = "keel"
POD_INTERFACE = "eth0"


def host_veth_name(pod_uid: str) -> str:
    return VETH_PREFIX + hashlib.sha256(pod_uid.encode()).hexdigest()[:11]


def _peer_name(pod_uid: str) -> str:
    # Temporary name of the pod end while it still lives in the host namespace.
    return "kp" + hashlib.sha256(pod_uid.encode()).hexdigest()[:13]


def gateway_for(pod_cidr: str) -> str:
    """The bridge address: the first host address of the pod CIDR (10.244.1.0/24 -> .1)."""
    network = ipaddress.ip_network(pod_cidr, strict=False)
    return str(network.network_address + 1)


@dataclass(frozen=True)
class PodInterface:
    host_veth: str
    address: str
    prefixlen: int
    gateway: str


class BridgeNetwork:
    """Sets up and tears down pod interfaces on one bridge. Blocking; use from a thread."""

    def __init__(
        self, *, pod_cidr: str, bridge: str = DEFAULT_BRIDGE, host_netns: str | None = None
    ) -> None:
        self.network = ipaddress.ip_network(pod_cidr, strict=False)
        self.bridge = bridge
        self.host_netns = host_netns
        self.gateway = gateway_for(pod_cidr)

    def ensure_bridge(self) -> None:
        netlink.ensure_bridge(
            self.bridge,
            address=self.gateway,
            prefixlen=self.network.prefixlen,
            netns=self.host_netns,
        )

    def setup_pod(self, *, pod_uid: str, netns_path: str, address: str) -> PodInterface:
        """Give the namespace at ``netns_path`` an ``eth0`` with ``address`` on the bridge."""
        host = host_veth_name(pod_uid)
        peer = _peer_name(pod_uid)
        self.ensure_bridge()
        # Leftovers of an interrupted earlier attempt for the same pod would make add fail.
        netlink.delete_link(host, netns=self.host_netns)
        netlink.delete_link(peer, netns=self.host_netns)
        netlink.create_veth(host, peer=peer, netns=self.host_netns)
        try:
            netlink.attach_to_bridge(host, bridge=self.bridge, netns=self.host_netns)
            netlink.move_to_netns(peer, target=netns_path, netns=self.host_netns)
            netlink.configure_interface(
                peer,
                rename_to=POD_INTERFACE,
                address=address,
                prefixlen=self.network.prefixlen,
                gateway=self.gateway,
                netns=netns_path,
            )
        except netlink.NetworkError:
            self.teardown_pod(pod_uid=pod_uid)
            raise
        return PodInterface(host, address, self.network.prefixlen, self.gateway)

    def teardown_pod(self, *, pod_uid: str) -> bool:
        """Delete the pod's veth pair; False when there was nothing to delete."""
        removed = netlink.delete_link(host_veth_name(pod_uid), netns=self.host_netns)
        removed |= netlink.delete_link(_peer_name(pod_uid), netns=self.host_netns)
        return removed

    def pod_veths(self) -> set[str]:
        """Host-side pod veths currently present (for leak checks and garbage collection)."""
        return {
            name
            for name in netlink.list_links(netns=self.host_netns)
            if name.startswith(VETH_PREFIX) and len(name) == 15
        }
