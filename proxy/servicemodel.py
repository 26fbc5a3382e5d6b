"""Services and EndpointSlices (plain API dicts) turned into what a proxier programs.

Mode-independent: the iptables renderer (and a later nftables one) consume ``ServicePort``
and ``Endpoint`` values and never look at raw API objects. The endpoint selection follows
kube-proxy's CategorizeEndpoints: only ready endpoints, or serving-and-terminating ones when
no ready endpoint exists; Local traffic policies use the endpoints on this node only.
Only IPv4 is handled; IPv6 addresses are skipped.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_SECONDS = 10800


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service: the unit kube-proxy calls a ServicePortName."""

    namespace: str
    name: str
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
    def service_key(self) -> str:
        return f"{self.namespace}/{self.name}"

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


@dataclass(frozen=True)
class EndpointSelection:
    """The endpoints one service port uses on this node (see CategorizeEndpoints)."""

    cluster: tuple[Endpoint, ...]
    local: tuple[Endpoint, ...]
    reachable: tuple[Endpoint, ...]  # cluster plus local, each endpoint once
    has_any: bool  # usable endpoints exist anywhere (decides REJECT vs DROP)


def _ipv4(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(ip for ip in addresses if ip and ":" not in ip)


def service_ports(service: Mapping[str, Any]) -> list[ServicePort]:
    """All ServicePorts of a Service; none for headless or ExternalName Services."""
    meta, spec = service.get("metadata", {}), service.get("spec", {})
    if spec.get("type") == "ExternalName":
        return []
    cluster_ip = spec.get("clusterIP") or None
    if cluster_ip in ("None", None) or ":" in cluster_ip:
        return []
    ingress = (service.get("status", {}).get("loadBalancer", {}) or {}).get("ingress") or []
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
                namespace=meta.get("namespace", "default"),
                name=meta["name"],
                port_name=port.get("name") or "",
                protocol=(port.get("protocol") or "TCP").lower(),
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
    return result


def slice_service_key(endpoint_slice: Mapping[str, Any]) -> str | None:
    """ "ns/name" of the Service an EndpointSlice belongs to, or None if unlabelled."""
    meta = endpoint_slice.get("metadata", {})
    service_name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service_name:
        return None
    return f"{meta.get('namespace', 'default')}/{service_name}"


def endpoints_for(port: ServicePort, slices: Iterable[Mapping[str, Any]]) -> list[Endpoint]:
    """Endpoints of one service port across its slices, resolved per slice.

    A named targetPort can resolve to different numbers on different pods; the slice
    controller then writes one slice per number, so the port is taken per slice.
    """
    found: dict[str, Endpoint] = {}
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType", "IPv4") != "IPv4":
            continue
        target = None
        for slice_port in endpoint_slice.get("ports") or ():
            same_name = (slice_port.get("name") or "") == port.port_name
            same_protocol = (slice_port.get("protocol") or "TCP").lower() == port.protocol
            if same_name and same_protocol and slice_port.get("port"):
                target = int(slice_port["port"])
                break
        if target is None:
            continue
        for endpoint in endpoint_slice.get("endpoints") or ():
            conditions = endpoint.get("conditions") or {}
            ready = conditions.get("ready") is not False  # unknown counts as ready
            serving = conditions.get("serving")
            for ip in endpoint.get("addresses") or ():
                if ":" in ip:  # IPv6
                    continue
                address = f"{ip}:{target}"
                if address not in found:
                    found[address] = Endpoint(
                        ip,
                        target,
                        ready,
                        ready if serving is None else bool(serving),
                        bool(conditions.get("terminating")),
                        endpoint.get("nodeName"),
                        address,
                    )
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
