"""Render Services and EndpointSlices into iptables-restore input (pure functions, no I/O).

Structure and rule text follow kube-proxy's iptables proxier (pkg/proxy/iptables/proxier.go)
with our KEEL- prefix:

* nat KEEL-SERVICES matches a service IP:port and jumps to the per-port KEEL-SVC- chain
  (cluster endpoints) or KEEL-SVL- chain (node-local endpoints); external IPs, load-balancer
  IPs and node ports go through KEEL-EXT-, which masquerades or keeps the source address
  depending on externalTrafficPolicy. The nodeports jump is always the last rule.
* KEEL-SVC-/KEEL-SVL- pick an endpoint with ``statistic --mode random`` probabilities
  1/n, 1/(n-1), ... 1, after ``recent --rcheck`` rules when ClientIP affinity is on.
* KEEL-SEP- chains mark hairpin traffic for masquerade and DNAT to one endpoint.
* filter KEEL-SERVICES / KEEL-EXTERNAL-SERVICES REJECT traffic for ports without endpoints
  (or DROP it when only a Local policy leaves nothing usable on this node).

Invariants: ``render_service`` depends only on its inputs, so a caller may cache its result
per Service and re-render only changed Services (partial sync); the top-level chains are
always rewritten whole, per-service chains only for the Services being written; a chain is
deleted only if it is one of ours (names.is_per_service_chain).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy import servicemodel
from proxy.iptables import names
from proxy.servicemodel import Endpoint, ServicePort

MASQ_MARK = "0x4000"


@dataclass(frozen=True)
class NodeInfo:
    """What the rules need to know about this node and the proxy's flags."""

    name: str
    cluster_cidr: str | None = None  # traffic from outside it is masqueraded
    nodeport_addresses: tuple[str, ...] = ()  # empty: every local address
    nodeport_localhost: bool = False
    masquerade_all: bool = False


@dataclass(frozen=True)
class ServiceRules:
    """The rendered rules of one Service (all of its ports)."""

    nat_services: tuple[str, ...] = ()
    nat_nodeports: tuple[str, ...] = ()
    filter_services: tuple[str, ...] = ()
    filter_external: tuple[str, ...] = ()
    filter_nodeports: tuple[str, ...] = ()
    chains: tuple[str, ...] = ()  # nat chains owned by this Service
    chain_rules: tuple[str, ...] = ()  # "-A" lines of those chains

    @property
    def nat_rule_count(self) -> int:
        return len(self.nat_services) + len(self.nat_nodeports) + len(self.chain_rules)

    @property
    def filter_rule_count(self) -> int:
        return len(self.filter_services) + len(self.filter_external) + len(self.filter_nodeports)


@dataclass(frozen=True)
class Ruleset:
    """iptables-restore input plus the rule counts of the whole desired state."""

    text: str
    nat_rules: int
    filter_rules: int


def _comment(text: str) -> str:
    return f'-m comment --comment "{text}"'


def _endpoint_rules(port: ServicePort, chain: str, endpoints: tuple[Endpoint, ...]) -> list[str]:
    lines = []
    if port.affinity_seconds:
        for ep in endpoints:
            sep = names.endpoint_chain(port.key, port.protocol, ep.address)
            lines.append(
                f"-A {chain} {_comment(f'{port.key} -> {ep.address}')} -m recent --name {sep}"
                f" --rcheck --seconds {port.affinity_seconds} --reap -j {sep}"
            )
    count = len(endpoints)
    for index, ep in enumerate(endpoints):
        sep = names.endpoint_chain(port.key, port.protocol, ep.address)
        statistic = ""
        if index < count - 1:
            statistic = f" -m statistic --mode random --probability {1.0 / (count - index):.10f}"
        lines.append(f"-A {chain} {_comment(f'{port.key} -> {ep.address}')}{statistic} -j {sep}")
    return lines


def _render_port(port: ServicePort, endpoints: list[Endpoint], node: NodeInfo) -> ServiceRules:
    selection = servicemodel.select_endpoints(port, endpoints, node_name=node.name)
    key, proto = port.key, port.protocol
    svc_chain = names.service_chain(key, proto)
    svl_chain = names.local_service_chain(key, proto)
    ext_chain = names.external_chain(key, proto)
    has_endpoints = selection.has_any

    internal_chain, has_internal = svc_chain, has_endpoints
    if port.internal_local:
        internal_chain, has_internal = svl_chain, bool(selection.local)
    external_policy_chain, has_external = svc_chain, has_endpoints
    if port.external_local:
        external_policy_chain, has_external = svl_chain, bool(selection.local)

    internal_filter = external_filter = ("", "")
    if not has_endpoints:
        internal_filter = external_filter = ("REJECT", f"{key} has no endpoints")
    else:
        if not has_internal:
            internal_filter = ("DROP", f"{key} has no local endpoints")
        if not has_external:
            external_filter = ("DROP", f"{key} has no local endpoints")

    match = f"-m {proto} -p {proto}"
    nat_services: list[str] = []
    nat_nodeports: list[str] = []
    filter_services: list[str] = []
    filter_external: list[str] = []
    filter_nodeports: list[str] = []
    chains: list[str] = []
    rules: list[str] = []

    cluster_match = f"{match} -d {port.cluster_ip} --dport {port.port}"
    if has_internal:
        nat_services.append(
            f"-A {names.SERVICES} {_comment(f'{key} cluster IP')} {cluster_match}"
            f" -j {internal_chain}"
        )
    else:
        target, comment = internal_filter
        filter_services.append(
            f"-A {names.SERVICES} {_comment(comment)} {cluster_match} -j {target}"
        )

    for kind, addresses in (
        ("external IP", port.external_ips),
        ("loadbalancer IP", port.load_balancer_ips),
    ):
        for address in addresses:
            ip_match = f"{match} -d {address} --dport {port.port}"
            if has_endpoints:
                nat_services.append(
                    f"-A {names.SERVICES} {_comment(f'{key} {kind}')} {ip_match} -j {ext_chain}"
                )
            if not has_external:
                target, comment = external_filter
                filter_external.append(
                    f"-A {names.EXTERNAL_SERVICES} {_comment(comment)} {ip_match} -j {target}"
                )

    if port.node_port:
        if has_endpoints:
            nat_nodeports.append(
                f"-A {names.NODEPORTS} {_comment(key)} {match} --dport {port.node_port}"
                f" -j {ext_chain}"
            )
        if not has_external:
            target, comment = external_filter
            filter_external.append(
                f"-A {names.EXTERNAL_SERVICES} {_comment(comment)} -m addrtype --dst-type LOCAL"
                f" {match} --dport {port.node_port} -j {target}"
            )

    if port.health_check_node_port:
        filter_nodeports.append(
            f"-A {names.NODEPORTS} {_comment(f'{key} health check node port')}"
            f" -m tcp -p tcp --dport {port.health_check_node_port} -j ACCEPT"
        )

    if has_internal:
        if node.masquerade_all:
            rules.append(
                f"-A {internal_chain} {_comment(f'{key} cluster IP')} {cluster_match}"
                f" -j {names.MARK_MASQ}"
            )
        elif node.cluster_cidr:
            rules.append(
                f"-A {internal_chain} {_comment(f'{key} cluster IP')} {cluster_match}"
                f" ! -s {node.cluster_cidr} -j {names.MARK_MASQ}"
            )

    if has_endpoints and port.externally_accessible:
        chains.append(ext_chain)
        if not port.external_local:
            rules.append(
                f"-A {ext_chain} {_comment(f'masquerade traffic for {key} external destinations')}"
                f" -j {names.MARK_MASQ}"
            )
        else:
            if node.cluster_cidr:
                rules.append(
                    f"-A {ext_chain} {_comment(f'pod traffic for {key} external destinations')}"
                    f" -s {node.cluster_cidr} -j {svc_chain}"
                )
            rules.append(
                f"-A {ext_chain}"
                f" {_comment(f'masquerade LOCAL traffic for {key} external destinations')}"
                f" -m addrtype --src-type LOCAL -j {names.MARK_MASQ}"
            )
            rules.append(
                f"-A {ext_chain} {_comment(f'route LOCAL traffic for {key} external destinations')}"
                f" -m addrtype --src-type LOCAL -j {svc_chain}"
            )
        if has_external:
            rules.append(f"-A {ext_chain} -j {external_policy_chain}")

    if selection.cluster and port.uses_cluster_endpoints:
        chains.append(svc_chain)
        rules.extend(_endpoint_rules(port, svc_chain, selection.cluster))
    if selection.local and port.uses_local_endpoints:
        chains.append(svl_chain)
        rules.extend(_endpoint_rules(port, svl_chain, selection.local))

    for ep in selection.reachable:
        sep = names.endpoint_chain(key, proto, ep.address)
        chains.append(sep)
        rules.append(f"-A {sep} {_comment(key)} -s {ep.ip}/32 -j {names.MARK_MASQ}")
        affinity = f" -m recent --name {sep} --set" if port.affinity_seconds else ""
        rules.append(
            f"-A {sep} {_comment(key)}{affinity} {match} -j DNAT --to-destination {ep.address}"
        )

    return ServiceRules(
        nat_services=tuple(nat_services),
        nat_nodeports=tuple(nat_nodeports),
        filter_services=tuple(filter_services),
        filter_external=tuple(filter_external),
        filter_nodeports=tuple(filter_nodeports),
        chains=tuple(chains),
        chain_rules=tuple(rules),
    )


def render_service(
    service: Mapping[str, Any], slices: Iterable[Mapping[str, Any]], node: NodeInfo
) -> ServiceRules:
    """All rules of one Service given the EndpointSlices that belong to it."""
    slices = list(slices)
    parts = [
        _render_port(port, servicemodel.endpoints_for(port, slices), node)
        for port in servicemodel.service_ports(service)
    ]
    if len(parts) == 1:
        return parts[0]
    return ServiceRules(
        **{
            field: tuple(line for part in parts for line in getattr(part, field))
            for field in ServiceRules.__dataclass_fields__
        }
    )


def _nodeports_jumps(node: NodeInfo) -> list[str]:
    comment = _comment("keelson service nodeports; NOTE: this must be the last rule in this chain")
    if not node.nodeport_addresses:
        localhost = "" if node.nodeport_localhost else " ! -d 127.0.0.0/8"
        return [
            f"-A {names.SERVICES} {comment} -m addrtype --dst-type LOCAL{localhost}"
            f" -j {names.NODEPORTS}"
        ]
    return [
        f"-A {names.SERVICES} {comment} -d {address} -j {names.NODEPORTS}"
        for address in node.nodeport_addresses
        if node.nodeport_localhost or not address.startswith("127.")
    ]


def _static_filter_rules(node: NodeInfo) -> list[str]:
    rules = [
        f"-A {names.FORWARD} -m conntrack --ctstate INVALID -j DROP",
        f"-A {names.FORWARD} {_comment('keelson forwarding rules')}"
        f" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
        f"-A {names.FORWARD} {_comment('keelson forwarding conntrack rule')}"
        " -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    if node.cluster_cidr:
        comment = _comment("keelson forwarding rules for the cluster CIDR")
        rules += [
            f"-A {names.FORWARD} {comment} -s {node.cluster_cidr} -j ACCEPT",
            f"-A {names.FORWARD} {comment} -d {node.cluster_cidr} -j ACCEPT",
        ]
    if node.nodeport_localhost:
        rules.append(
            f"-A {names.FIREWALL} {_comment('block incoming localnet connections')}"
            " -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT"
            " -j DROP"
        )
    return rules


def _static_nat_rules() -> list[str]:
    return [
        f"-A {names.POSTROUTING} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        f"-A {names.POSTROUTING} -j MARK --xor-mark {MASQ_MARK}",
        f"-A {names.POSTROUTING} {_comment('keelson service traffic requiring SNAT')}"
        " -j MASQUERADE --random-fully",
        f"-A {names.MARK_MASQ} -j MARK --or-mark {MASQ_MARK}",
    ]


def assemble(
    rules: Mapping[str, ServiceRules],
    node: NodeInfo,
    *,
    write_chains_of: Collection[str] | None = None,
    delete_chains: Iterable[str] = (),
) -> Ruleset:
    """Build iptables-restore input (for --noflush) from per-Service rules.

    ``write_chains_of``: keys of the Services whose own chains are (re)written; None means
    all of them (a full sync). Top-level chains are always rewritten whole. ``delete_chains``
    are flushed and removed; only our per-service chains are accepted there.
    """
    keys = sorted(rules)
    written = keys if write_chains_of is None else [k for k in keys if k in write_chains_of]
    doomed = sorted(set(delete_chains))
    for chain in doomed:
        if not names.is_per_service_chain(chain):
            raise ValueError(f"refusing to delete chain {chain!r}: not a keelson service chain")

    filter_rules = _static_filter_rules(node)
    filter_services = [line for k in keys for line in rules[k].filter_services]
    filter_external = [line for k in keys for line in rules[k].filter_external]
    filter_nodeports = [line for k in keys for line in rules[k].filter_nodeports]
    nat_static = _static_nat_rules()
    nat_services = [line for k in keys for line in rules[k].nat_services]
    nat_services += _nodeports_jumps(node)
    nat_nodeports = [line for k in keys for line in rules[k].nat_nodeports]

    out = ["*filter"]
    out += [f":{chain} - [0:0]" for chain in names.FILTER_TOP_CHAINS]
    out += filter_rules + filter_services + filter_external + filter_nodeports
    out += ["COMMIT", "*nat"]
    out += [f":{chain} - [0:0]" for chain in names.NAT_TOP_CHAINS]
    out += [f":{chain} - [0:0]" for k in written for chain in rules[k].chains]
    out += [f":{chain} - [0:0]" for chain in doomed]
    out += nat_static + nat_services + nat_nodeports
    out += [line for k in written for line in rules[k].chain_rules]
    out += [f"-X {chain}" for chain in doomed]
    out += ["COMMIT", ""]

    nat_total = len(nat_static) + len(nat_services) + len(nat_nodeports)
    nat_total += sum(len(rules[k].chain_rules) for k in keys)
    filter_total = len(filter_rules) + len(filter_services) + len(filter_external)
    filter_total += len(filter_nodeports)
    return Ruleset(text="\n".join(out), nat_rules=nat_total, filter_rules=filter_total)


def group_slices(
    endpoint_slices: Iterable[Mapping[str, Any]],
) -> dict[str, list[Mapping[str, Any]]]:
    """EndpointSlices by the "ns/name" of their Service (unlabelled slices are ignored)."""
    grouped: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for endpoint_slice in endpoint_slices:
        key = servicemodel.slice_service_key(endpoint_slice)
        if key is not None:
            grouped[key].append(endpoint_slice)
    return grouped


def service_key(service: Mapping[str, Any]) -> str:
    meta = service["metadata"]
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


def render(
    services: Iterable[Mapping[str, Any]],
    endpoint_slices: Iterable[Mapping[str, Any]],
    node: NodeInfo,
    *,
    changed: Collection[str] | None = None,
    delete_chains: Iterable[str] = (),
) -> Ruleset:
    """Full (``changed`` None) or partial restore input for Services and their slices."""
    grouped = group_slices(endpoint_slices)
    rules = {
        service_key(svc): render_service(svc, grouped.get(service_key(svc), ()), node)
        for svc in services
    }
    return assemble(rules, node, write_chains_of=changed, delete_chains=delete_chains)
