"""The proxy's model of Services and EndpointSlices, and the endpoint selection.

``ServiceInfo`` and ``SliceInfo`` are what the proxy keeps of each API object (built by the
informers' transforms in proxy/objects.py); ``ServicePort`` and ``Endpoint`` are what the
iptables renderer (and a later nftables one) programs. Nothing here reads API dicts except
``service_ports``, which the transform calls once per Service version.

The endpoint selection follows kube-proxy's CategorizeEndpoints: only ready endpoints, or
serving-and-terminating ones when no ready endpoint exists; Local traffic policies use the
endpoints on this node only. Only IPv4 is handled; IPv6 addresses are skipped.

Invariant: records are immutable and compare equal exactly when the rules they produce
are equal (they keep no resourceVersion, and the trigger time does not take part), so the
change trackers and the informer store's relist diff drop updates that change nothing the
proxy programs.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

DEFAULT_AFFINITY_SECONDS = 10800


@dataclass(frozen=True, slots=True)  # slots: 10,000 of them are kept
class ServicePort:
    """One port of one Service: the unit kube-proxy calls a ServicePortName."""

    service_key: str  # "namespace/name"
    port_name: str
    protocol: str  # lower case: tcp, udp, sctp
    port: int
    cluster_ip: str | None
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    affinity_seconds: int = 0  # 0: no ClientIP affinity
    external_local: bool = False
    internal_local: bool = False
    health_check_node_port: int = 0

    @property
    def key(self) -> str:
        """ "ns/name:port" (or "ns/name" for an unnamed port), used in names and comments."""
        suffix = f":{self.port_name}" if self.port_name else ""
        return f"{self.service_key}{suffix}"

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        # Even with externalTrafficPolicy Local, externally accessible ports need cluster
        # endpoints: pod traffic to an external destination short-circuits to them.
        return not self.internal_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_local or (self.externally_accessible and self.external_local)


class Endpoint(NamedTuple):
    """One endpoint of one service port (a tuple: created 30,000 times per full sync at
    10,000 Services, where a frozen dataclass cost measurably more)."""

    ip: str
    port: int
    ready: bool
    serving: bool
    terminating: bool
    node_name: str | None
    address: str  # "ip:port"


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """What the proxy keeps of a Service."""

    key: str  # "namespace/name"
    ports: tuple[ServicePort, ...]  # empty: headless, ExternalName or IPv6 (no rules)


class SlicePort(NamedTuple):
    name: str  # "" for an unnamed port
    protocol: str  # lower case, as ServicePort.protocol
    port: int


class EndpointState(NamedTuple):
    """Conditions and node of one endpoint; shared by every endpoint in the same state."""

    ready: bool  # an unknown condition counts as ready, as in Kubernetes
    serving: bool
    terminating: bool
    node_name: str | None


@dataclass(frozen=True, slots=True)
class SliceInfo:
    """What the proxy keeps of an EndpointSlice: the first address of each IPv4 endpoint
    (consumers use only the first, as kube-proxy does) and, in the same order, its state.

    The addresses are packed, 4 bytes each in network order: one 45-byte object for three
    endpoints instead of a tuple and three strings (~240 bytes; 2 MB at 10,000 slices).
    """

    key: str  # "namespace/name" of the slice
    service_key: str | None  # "namespace/name" of its Service; None: not labelled, ignored
    ports: tuple[SlicePort, ...]
    packed_addresses: bytes
    states: tuple[EndpointState, ...]
    trigger_time: float | None = field(default=None, compare=False)  # epoch seconds

    @property
    def addresses(self) -> tuple[str, ...]:
        packed = self.packed_addresses
        return tuple(socket.inet_ntoa(packed[i : i + 4]) for i in range(0, len(packed), 4))

    def target_port(self, port: ServicePort) -> int | None:
        """The endpoint port this slice gives ``port`` (matched by name and protocol)."""
        for slice_port in self.ports:
            if slice_port.name == port.port_name and slice_port.protocol == port.protocol:
                return slice_port.port or None
        return None


@dataclass(frozen=True)
class EndpointSelection:
    """The endpoints one service port uses on this node (see CategorizeEndpoints)."""

    cluster: tuple[Endpoint, ...]
    local: tuple[Endpoint, ...]
    reachable: tuple[Endpoint, ...]  # cluster plus local, each endpoint once
    has_any: bool  # usable endpoints exist anywhere (decides REJECT vs DROP)


def _ipv4(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(ip for ip in addresses if ip and ":" not in ip)


def service_ports(service: Mapping[str, Any], *, key: str) -> tuple[ServicePort, ...]:
    """All ServicePorts of a Service (an API dict); none for headless or ExternalName
    Services. ``key``: its "namespace/name", kept by reference in every port."""
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return ()
    cluster_ip = spec.get("clusterIP") or None
    if cluster_ip in ("None", None) or ":" in cluster_ip:
        return ()
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    lb_ips = _ipv4(entry.get("ip", "") for entry in ingress)
    external_ips = _ipv4(spec.get("externalIPs") or ())
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        config = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        affinity = int(config.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)
    result = []
    for port in spec.get("ports") or ():
        node_port = int(port.get("nodePort") or 0)
        accessible = bool(node_port or external_ips or lb_ips)
        external_local = accessible and spec.get("externalTrafficPolicy") == "Local"
        result.append(
            ServicePort(
                service_key=key,
                port_name=sys.intern(port.get("name") or ""),
                protocol=sys.intern((port.get("protocol") or "TCP").lower()),
                port=int(port["port"]),
                cluster_ip=cluster_ip,
                node_port=node_port,
                external_ips=external_ips,
                load_balancer_ips=lb_ips,
                affinity_seconds=affinity,
                external_local=external_local,
                internal_local=spec.get("internalTrafficPolicy") == "Local",
                health_check_node_port=(
                    int(spec.get("healthCheckNodePort") or 0) if external_local else 0
                ),
            )
        )
    return tuple(result)


def endpoints_for(port: ServicePort, slices: Iterable[SliceInfo]) -> list[Endpoint]:
    """Endpoints of one service port across its slices, resolved per slice.

    A named targetPort can resolve to different numbers on different pods; the slice
    controller then writes one slice per number, so the port is taken per slice.
    """
    found: dict[str, Endpoint] = {}
    for endpoint_slice in slices:
        target = endpoint_slice.target_port(port)
        if target is None:
            continue
        for ip, state in zip(endpoint_slice.addresses, endpoint_slice.states, strict=True):
            address = f"{ip}:{target}"
            if address not in found:
                found[address] = Endpoint(
                    ip, target, state.ready, state.serving, state.terminating, state.node_name,
                    address,
                )  # fmt: skip
    return sorted(found.values(), key=lambda ep: (socket.inet_aton(ep.ip), ep.port))


def _usable(endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    endpoints = tuple(endpoints)
    ready = tuple(ep for ep in endpoints if ep.ready)
    if ready:
        return ready
    return tuple(ep for ep in endpoints if ep.serving and ep.terminating)


def select_endpoints(
    port: ServicePort, endpoints: Iterable[Endpoint], *, node_name: str
) -> EndpointSelection:
    """Split endpoints into the cluster-wide and node-local sets the rules use."""
    endpoints = tuple(endpoints)
    cluster = _usable(endpoints) if port.uses_cluster_endpoints else ()
    if not port.uses_local_endpoints:
        return EndpointSelection(cluster, (), cluster, bool(cluster))
    local = _usable(ep for ep in endpoints if ep.node_name == node_name)
    has_any = bool(cluster) or bool(_usable(endpoints))
    reachable = cluster + tuple(ep for ep in local if ep not in cluster)
    return EndpointSelection(cluster, local, reachable, has_any)
