"""Service ClusterIP / NodePort allocation on create, update and delete.

Why here and not in the allocators: this decides *which* addresses and ports a Service
object needs (headless and ExternalName need none, NodePort and LoadBalancer need one
node port per port, ``externalTrafficPolicy: Local`` load balancers a health-check node
port) and keeps what an update did not mention, as Kubernetes does. The allocators only
hand out and take back numbers, atomically.

Allocations are returned as ``("ip", "10.96.0.10")`` / ``("port", 30080)`` pairs so the
REST store can give back exactly what a failed write took.
"""

from __future__ import annotations

from typing import Any

from apiserver import status
from apiserver.admission.allocators import AllocationError, ClusterIPAllocator, NodePortAllocator

Obj = dict[str, Any]
Allocation = tuple[str, Any]
_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


def _spec(svc: Obj | None) -> Obj:
    return (svc or {}).get("spec") or {}


def _needs_health_check_port(spec: Obj) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def allocations_of(svc: Obj) -> list[Allocation]:
    spec = _spec(svc)
    held: list[Allocation] = []
    ip = spec.get("clusterIP")
    if ip and ip != "None":
        held.append(("ip", ip))
    for port in spec.get("ports") or []:
        if isinstance(port, dict) and port.get("nodePort"):
            held.append(("port", port["nodePort"]))
    if spec.get("healthCheckNodePort"):
        held.append(("port", spec["healthCheckNodePort"]))
    return held


def keep_allocations(new: Obj, old: Obj) -> None:
    """An update that leaves out clusterIP or nodePorts keeps the old ones."""
    spec, old_spec = _spec(new), _spec(old)
    if not spec.get("clusterIP") and old_spec.get("clusterIP") \
            and spec.get("type") != "ExternalName":
        spec["clusterIP"] = old_spec["clusterIP"]
        spec["clusterIPs"] = list(old_spec.get("clusterIPs") or [old_spec["clusterIP"]])
    if spec.get("type") in _NODE_PORT_TYPES:
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                     for p in old_spec.get("ports") or [] if isinstance(p, dict)}
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and not port.get("nodePort"):
                previous = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                if previous:
                    port["nodePort"] = previous
        if _needs_health_check_port(spec) and not spec.get("healthCheckNodePort") \
                and old_spec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]
    else:
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.pop("nodePort", None)
    if not _needs_health_check_port(spec):
        spec.pop("healthCheckNodePort", None)


def released_by_update(new: Obj, old: Obj) -> list[Allocation]:
    still_held = set(allocations_of(new))
    return [a for a in allocations_of(old) if a not in still_held]


def _invalid(svc: Obj, field: str, message: str) -> status.StatusError:
    name = (svc.get("metadata") or {}).get("name", "")
    return status.invalid("Service", "", name, [status.field_cause(field, message)])


async def allocate(new: Obj, old: Obj | None, *, ips: ClusterIPAllocator,
                   ports: NodePortAllocator) -> list[Allocation]:
    """Fill in and reserve what ``new`` needs beyond what ``old`` already holds."""
    spec = _spec(new)
    kind = spec.get("type", "ClusterIP")
    held = set(allocations_of(old)) if old else set()
    taken: list[Allocation] = []
    try:
        if kind != "ExternalName":
            ip = spec.get("clusterIP")
            if ip == "None":
                spec["clusterIPs"] = ["None"]
            elif not (ip and ("ip", ip) in held):
                try:
                    ip = await ips.allocate(ip or None)
                except AllocationError as exc:
                    raise _invalid(new, "spec.clusterIPs",
                                   f"Invalid value: [\"{spec.get('clusterIP') or ''}\"]: "
                                   f"failed to allocate IP {spec.get('clusterIP') or ''}: {exc}"
                                   ) from None
                taken.append(("ip", ip))
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
        if kind in _NODE_PORT_TYPES:
            for i, port in enumerate(spec.get("ports") or []):
                if not isinstance(port, dict):
                    continue
                wanted = port.get("nodePort")
                if wanted and ("port", wanted) in held:
                    continue
                try:
                    port["nodePort"] = await ports.allocate(wanted or None)
                except AllocationError as exc:
                    raise _invalid(new, f"spec.ports[{i}].nodePort",
                                   f"Invalid value: {wanted or 0}: {exc}") from None
                taken.append(("port", port["nodePort"]))
            if _needs_health_check_port(spec):
                wanted = spec.get("healthCheckNodePort")
                if not (wanted and ("port", wanted) in held):
                    try:
                        spec["healthCheckNodePort"] = await ports.allocate(wanted or None)
                    except AllocationError as exc:
                        raise _invalid(new, "spec.healthCheckNodePort",
                                       f"Invalid value: {wanted or 0}: {exc}") from None
                    taken.append(("port", spec["healthCheckNodePort"]))
    except BaseException:
        await release(taken, ips=ips, ports=ports)
        raise
    return taken


async def release(allocations: list[Allocation], *, ips: ClusterIPAllocator,
                  ports: NodePortAllocator) -> None:
    for kind, value in allocations:
        if kind == "ip":
            await ips.release(value)
        else:
            await ports.release(value)
