"""What the proxy keeps of Services and EndpointSlices: the informers' transform functions.

At 10,000 Services the informer stores are the largest part of the proxy's memory, and most
of an API object is of no use to it (managedFields, annotations, selectors, targetPorts,
hints...). ``slim_service`` and ``slim_endpoint_slice`` run on every object before it enters
an informer's store (``Informer(..., transform=...)``, client-go's SetTransform), so the
store, the change trackers and the proxier all hold the same small copy.

Invariants:
- The result is still a valid API object of the same kind with every field the proxy reads
  (servicemodel, tracker, render): the rest of the proxy cannot tell a slim object from a
  full one, so rendering stays testable with plain API dicts.
- metadata.resourceVersion is kept: the informer's relist diff compares it.
- Slim objects are read-only. Repeated values are shared between objects: strings with
  few distinct values are interned (namespaces, protocols, node names, port names; not
  object names or IPs, whose entries in the intern table would cost more than they save:
  measured +1.3 MB at 10,000 Services), and endpoint conditions and the port lists of
  Services and slices come from small bounded caches, so 30,000 endpoints that are all
  ``ready`` point at one conditions dict. Mutating one would change them all.
- Lists become tuples (the proxy only iterates them).
- The transforms are idempotent: a slim object passes through unchanged in content.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from proxy import servicemodel, tracker

__all__ = ["slim_endpoint_slice", "slim_service"]

Obj = Mapping[str, Any]

_SERVICE_SPEC_FIELDS = (
    "type",
    "clusterIP",
    "externalIPs",
    "sessionAffinity",
    "sessionAffinityConfig",
    "externalTrafficPolicy",
    "internalTrafficPolicy",
    "healthCheckNodePort",
)
_SERVICE_PORT_FIELDS = ("name", "protocol", "port", "nodePort")
_SLICE_PORT_FIELDS = ("name", "port", "protocol")
# Spec fields with a handful of possible values, interned (port fields: see _ports).
_FEW_VALUES = frozenset(
    ("type", "sessionAffinity", "externalTrafficPolicy", "internalTrafficPolicy")
)
_CONDITIONS = ("ready", "serving", "terminating")
_CACHE_SIZE = 4096  # distinct port lists shared; more only costs sharing, not results


def _intern(value: Any) -> Any:
    return sys.intern(value) if isinstance(value, str) else value


def _metadata(meta: Obj, *, labels: Iterable[str] = (), annotations: Iterable[str] = ()) -> dict:
    slim = {"name": meta.get("name"), "namespace": _intern(meta.get("namespace", "default"))}
    if meta.get("resourceVersion"):
        slim["resourceVersion"] = meta["resourceVersion"]
    for field, keep in (("labels", labels), ("annotations", annotations)):
        values = meta.get(field) or {}
        kept = {key: values[key] for key in keep if key in values}
        if kept:
            slim[field] = kept
    return slim


def _pick(source: Obj, fields: Iterable[str]) -> dict:
    """``fields`` of ``source`` that are set; strings of the _FEW_VALUES fields interned."""
    return {
        field: _intern(source[field]) if field in _FEW_VALUES else source[field]
        for field in fields
        if source.get(field) is not None
    }


def slim_service(service: Obj) -> dict:
    """The parts of a Service the proxy renders from, with metadata for the store."""
    spec = service.get("spec") or {}
    slim_spec = _pick(spec, _SERVICE_SPEC_FIELDS)
    if "externalIPs" in slim_spec:
        slim_spec["externalIPs"] = tuple(slim_spec["externalIPs"])
    slim_spec["ports"] = _ports(spec.get("ports"), _SERVICE_PORT_FIELDS)
    slim: dict[str, Any] = {"metadata": _metadata(service.get("metadata") or {}), "spec": slim_spec}
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress")
    if ingress:
        ips = tuple({"ip": entry["ip"]} for entry in ingress if entry.get("ip"))
        slim["status"] = {"loadBalancer": {"ingress": ips}}
    return slim


@functools.lru_cache(maxsize=64)
def _conditions(ready: bool | None, serving: bool | None, terminating: bool | None) -> dict:
    values = dict(zip(_CONDITIONS, (ready, serving, terminating), strict=True))
    return {key: value for key, value in values.items() if value is not None}


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _shared_ports(fields: tuple[str, ...], ports: tuple[tuple[Any, ...], ...]) -> tuple[dict, ...]:
    return tuple(
        {field: value for field, value in zip(fields, port, strict=True) if value is not None}
        for port in ports
    )


def _ports(ports: Iterable[Obj] | None, fields: tuple[str, ...]) -> tuple[dict, ...]:
    """``fields`` of each port, as one tuple shared by every object with the same ports
    (most Services and slices repeat a handful of port lists; NodePorts make a Service's
    unique, and then the bounded cache only costs a lookup)."""
    values = tuple(tuple(_intern(port.get(field)) for field in fields) for port in ports or ())
    return _shared_ports(fields, values)


def _bool_or_none(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _endpoint(endpoint: Obj) -> dict:
    conditions = endpoint.get("conditions") or {}
    slim = {
        "addresses": tuple(endpoint.get("addresses") or ()),
        "conditions": _conditions(*(_bool_or_none(conditions.get(c)) for c in _CONDITIONS)),
    }
    for field in ("nodeName", "zone"):
        if endpoint.get(field):
            slim[field] = sys.intern(endpoint[field])
    return slim


def slim_endpoint_slice(endpoint_slice: Obj) -> dict:
    """The parts of an EndpointSlice the proxy uses: its Service label, the trigger-time
    annotation, address type, ports and endpoints (addresses, conditions, node, zone)."""
    meta = _metadata(
        endpoint_slice.get("metadata") or {},
        labels=(servicemodel.SERVICE_NAME_LABEL,),
        annotations=(tracker.TRIGGER_TIME_ANNOTATION,),
    )
    return {
        "metadata": meta,
        "addressType": _intern(endpoint_slice.get("addressType", "IPv4")),
        "ports": _ports(endpoint_slice.get("ports"), _SLICE_PORT_FIELDS),
        "endpoints": tuple(_endpoint(ep) for ep in endpoint_slice.get("endpoints") or ()),
    }
