"""The EndpointSlice controller: which pods back each Service with a selector.

Kubernetes' ``pkg/controller/endpointslice`` in small. Every reconcile recomputes the
whole desired set of slices for one Service from the pod informer and makes the slices
labelled ``kubernetes.io/service-name=<svc>`` and ``endpointslice.kubernetes.io/managed-by=
endpointslice-controller.k8s.io`` match it; slices anyone else manages are never touched,
and Services without a selector are left to their users.

Invariants:
- An endpoint is a pod with an IP of the slice's address family that has not finished.
  Conditions as in Kubernetes: ``serving`` = the pod is Ready, ``terminating`` = it has a
  deletionTimestamp, ``ready`` = serving and not terminating (``publishNotReadyAddresses``
  makes every endpoint ready and serving).
- Ports are resolved per pod (a named ``targetPort`` is looked up in that pod's container
  ports; a pod lacking it does not get that port), pods with the same resolved ports share
  slices, at most :data:`MAX_ENDPOINTS_PER_SLICE` per slice, endpoints sorted by pod name so
  an unchanged world gives byte-identical slices and no writes.
- ``endpoints.kubernetes.io/last-change-trigger-time`` is written only when a slice's
  content changes: the newest change time of the pods or Service that triggered it
  (recorded by the event handlers; a Ready transition's ``lastTransitionTime``, a
  creation time, or the moment a deletion was seen).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from apiclient.client import ApiClient
from apiclient.controller import Controller, SharedInformers
from apiclient.errors import NotFoundError
from apiclient.labels import (
    ENDPOINTSLICE_CONTROLLER_NAME,
    LAST_CHANGE_TRIGGER_TIME_ANNOTATION,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
)
from apiclient.meta import object_key, owner_reference, split_key, utc_now
from apiclient.pods import is_ready, is_terminal, ready_condition
from apiclient.resources import ENDPOINTSLICES, PODS, SERVICES
from apiclient.selectors import selector_from_set
from apiclient.store import NAMESPACE_INDEX, namespace_index
from controllers.ownership import Expectations, labels_of

__all__ = [
    "EndpointSliceController",
    "PodEndpoint",
    "TriggerTimes",
    "desired_slices",
    "pod_endpoints",
]

MAX_ENDPOINTS_PER_SLICE = 100
SERVICE_INDEX = "endpointslice/service"


@dataclass(frozen=True)
class PodEndpoint:
    """One pod as an endpoint of one Service, with its ports resolved."""

    pod: dict
    ip: str
    ports: tuple[tuple[str, int, str], ...]  # (service port name, target port, protocol)
    ready: bool
    serving: bool
    terminating: bool

    @property
    def name(self) -> str:
        return self.pod["metadata"]["name"]

    def target_ref(self) -> dict:
        meta = self.pod["metadata"]
        return {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
                "uid": meta["uid"]}


def _resolve_port(service_port: Mapping, pod: Mapping) -> int | None:
    """FindPort: an int targetPort as is; a name looked up in the pod's container ports."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol", "TCP")
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    return None


def address_type(service: Mapping) -> str:
    families = (service.get("spec") or {}).get("ipFamilies") or ["IPv4"]
    return "IPv6" if families[0] == "IPv6" else "IPv4"


def _pod_ip(pod: Mapping, family: str) -> str | None:
    status = pod.get("status") or {}
    ips = [entry.get("ip") for entry in status.get("podIPs") or []] or [status.get("podIP")]
    for ip in ips:
        if not ip:
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(ip).version == (6 if family == "IPv6" else 4):
                return ip
    return None


def pod_endpoints(service: Mapping, pods: list[dict]) -> list[PodEndpoint]:
    """The selected pods as endpoints (pods without an IP or finished are skipped)."""
    spec = service.get("spec") or {}
    family = address_type(service)
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    endpoints = []
    for pod in pods:
        if is_terminal(pod):
            continue
        ip = _pod_ip(pod, family)
        if ip is None:
            continue
        ports = []
        for service_port in spec.get("ports") or []:
            resolved = _resolve_port(service_port, pod)
            if resolved is not None:
                ports.append((service_port.get("name") or "", resolved,
                              service_port.get("protocol", "TCP")))
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        serving = publish_not_ready or is_ready(pod)
        endpoints.append(PodEndpoint(pod=pod, ip=ip, ports=tuple(sorted(ports)),
                                     ready=serving and (publish_not_ready or not terminating),
                                     serving=serving, terminating=terminating))
    return sorted(endpoints, key=lambda endpoint: endpoint.name)


def _slice_endpoint(endpoint: PodEndpoint) -> dict:
    entry: dict = {
        "addresses": [endpoint.ip],
        "conditions": {"ready": endpoint.ready, "serving": endpoint.serving,
                       "terminating": endpoint.terminating},
        "targetRef": endpoint.target_ref(),
    }
    node = (endpoint.pod.get("spec") or {}).get("nodeName")
    if node:
        entry["nodeName"] = node
    return entry


def desired_slices(service: Mapping, pods: list[dict]) -> list[dict]:
    """The content (addressType, endpoints, ports) of every slice the Service needs.

    A Service with no endpoints still gets one empty placeholder slice, as in Kubernetes
    (a reader can tell "no endpoints" from "not yet processed").
    """
    family = address_type(service)
    groups: dict[tuple, list[PodEndpoint]] = {}
    for endpoint in pod_endpoints(service, pods):
        groups.setdefault(endpoint.ports, []).append(endpoint)
    if not groups:
        return [{"addressType": family, "endpoints": [], "ports": []}]
    slices = []
    for ports, members in sorted(groups.items(), key=lambda item: str(item[0])):
        port_list = [{"name": name, "port": number, "protocol": protocol}
                     for name, number, protocol in ports]
        for start in range(0, max(1, len(members)), MAX_ENDPOINTS_PER_SLICE):
            chunk = members[start:start + MAX_ENDPOINTS_PER_SLICE]
            slices.append({"addressType": family,
                           "endpoints": [_slice_endpoint(e) for e in chunk],
                           "ports": port_list})
    return slices


def pod_change_time(pod: Mapping) -> str:
    """When the pod last changed in a way endpoints reflect (RFC 3339 compares as text)."""
    times = [(pod.get("metadata") or {}).get("creationTimestamp") or ""]
    condition = ready_condition(pod)
    if condition is not None:
        times.append(condition.get("lastTransitionTime") or "")
    return max(times)


class TriggerTimes:
    """The newest change time per Service key, noted by handlers, taken by reconcile."""

    def __init__(self) -> None:
        self._times: dict[str, str] = {}

    def note(self, key: str, moment: str) -> None:
        if moment and moment > self._times.get(key, ""):
            self._times[key] = moment

    def take(self, key: str) -> str | None:
        return self._times.pop(key, None)


def selected_pods(service: Mapping, pods: list[dict]) -> list[dict]:
    selector = selector_from_set((service.get("spec") or {}).get("selector"))
    return [pod for pod in pods if selector.matches(labels_of(pod))]


def has_selector(service: Mapping) -> bool:
    return bool((service.get("spec") or {}).get("selector"))


class ServicePodsController(Controller):
    """What the EndpointSlice and Endpoints loops share: a Service key is reconciled when
    the Service or any pod it selects (before or after a change) changes."""

    def __init__(self, client: ApiClient, informers: SharedInformers) -> None:
        super().__init__(client, informers)
        self.services = informers.informer(SERVICES, indexers={
            NAMESPACE_INDEX: namespace_index})
        self.pods = informers.informer(PODS, indexers={NAMESPACE_INDEX: namespace_index})
        self.trigger_times = TriggerTimes()
        self.services.add_handler(on_add=self._on_service,
                                  on_update=lambda _old, new: self._on_service(new),
                                  on_delete=self._on_service)
        self.pods.add_handler(on_add=self._on_pod_added, on_update=self._on_pod_updated,
                              on_delete=self._on_pod_deleted)

    def pods_in(self, namespace: str) -> list[dict]:
        return self.pods.store.by_index(NAMESPACE_INDEX, namespace)

    def _on_service(self, service: dict) -> None:
        key = object_key(service)
        self.trigger_times.note(key, (service.get("metadata") or {}).get("creationTimestamp", ""))
        self.enqueue(key)

    def _services_selecting(self, *pods: dict) -> set[str]:
        namespace = pods[0]["metadata"].get("namespace", "")
        keys = set()
        for service in self.services.store.by_index(NAMESPACE_INDEX, namespace):
            if not has_selector(service):
                continue
            selector = selector_from_set(service["spec"]["selector"])
            if any(selector.matches(labels_of(pod)) for pod in pods):
                keys.add(object_key(service))
        return keys

    def _on_pod_added(self, pod: dict) -> None:
        for key in self._services_selecting(pod):
            self.trigger_times.note(key, pod_change_time(pod))
            self.enqueue(key)

    def _on_pod_updated(self, old: dict, new: dict) -> None:
        deleted_now = bool(new["metadata"].get("deletionTimestamp")) and \
            not old["metadata"].get("deletionTimestamp")
        moment = utc_now() if deleted_now else pod_change_time(new)
        for key in self._services_selecting(old, new):
            self.trigger_times.note(key, moment)
            self.enqueue(key)

    def _on_pod_deleted(self, pod: dict) -> None:
        for key in self._services_selecting(pod):
            self.trigger_times.note(key, utc_now())
            self.enqueue(key)

    def trigger_time(self, key: str, service: Mapping, pods: list[dict]) -> str:
        """The noted trigger time, or (after a restart) the newest change visible now."""
        noted = self.trigger_times.take(key)
        if noted:
            return noted
        times = [(service.get("metadata") or {}).get("creationTimestamp") or ""]
        times.extend(pod_change_time(pod) for pod in pods)
        return max(times)


class EndpointSliceController(ServicePodsController):
    name = "endpointslice"
    workers = 4

    def __init__(self, client: ApiClient, informers: SharedInformers) -> None:
        super().__init__(client, informers)
        self.slices = informers.informer(ENDPOINTSLICES, indexers={
            SERVICE_INDEX: lambda s: [f"{s['metadata'].get('namespace')}/"
                                      f"{labels_of(s).get(SERVICE_NAME_LABEL)}"]
            if labels_of(s).get(MANAGED_BY_LABEL) == ENDPOINTSLICE_CONTROLLER_NAME else []})
        self.expectations = Expectations()
        # A slice edited or deleted by someone else is put back; our own new slices
        # showing up in the cache release the expectations below.
        self.slices.add_handler(on_add=self._on_slice,
                                on_update=lambda _old, new: self._on_slice(new),
                                on_delete=self._on_slice)

    def _on_slice(self, endpoint_slice: dict) -> None:
        labels = labels_of(endpoint_slice)
        if labels.get(MANAGED_BY_LABEL) == ENDPOINTSLICE_CONTROLLER_NAME and \
                labels.get(SERVICE_NAME_LABEL):
            self.enqueue(f"{endpoint_slice['metadata'].get('namespace')}/"
                         f"{labels[SERVICE_NAME_LABEL]}")

    async def reconcile(self, key: str) -> None:
        if not self.expectations.satisfied(key, self.slices.store):
            # Slices we created or deleted are not in the cache yet: acting now would
            # create them twice. Their events requeue the key; the timer is a safety net.
            self.enqueue(key, after=1.0)
            return
        namespace, _ = split_key(key)
        service = self.services.store.get(key)
        existing = self.slices.store.by_index(SERVICE_INDEX, key)
        if service is None or not has_selector(service):
            # Gone or selector removed: our slices go (the owner reference would let the
            # garbage collector do it, but not when only the selector was removed).
            await self._delete_all(key, existing)
            self.trigger_times.take(key)
            return
        if service["metadata"].get("deletionTimestamp"):
            return
        pods = selected_pods(service, self.pods_in(namespace or ""))
        wanted = desired_slices(service, pods)
        owned = sorted((s for s in existing if _owned_by(s, service)),
                       key=lambda s: s["metadata"]["name"])
        await self._delete_all(key, [s for s in existing if not _owned_by(s, service)])
        trigger = None
        for index, content in enumerate(wanted):
            current = owned[index] if index < len(owned) else None
            if current is not None and _same_content(current, content, service):
                continue
            if trigger is None:
                trigger = self.trigger_time(key, service, pods)
            await self._write(key, service, current, content, trigger)
        await self._delete_all(key, owned[len(wanted):])

    async def _write(self, key: str, service: dict, current: dict | None, content: dict,
                     trigger: str) -> None:
        meta = service["metadata"]
        labels = {**(meta.get("labels") or {}), SERVICE_NAME_LABEL: meta["name"],
                  MANAGED_BY_LABEL: ENDPOINTSLICE_CONTROLLER_NAME}
        body = {"apiVersion": ENDPOINTSLICES.api_version, "kind": ENDPOINTSLICES.kind,
                **content}
        if current is None:
            body["metadata"] = {
                "generateName": f"{meta['name']}-", "namespace": meta["namespace"],
                "labels": labels, "annotations": {LAST_CHANGE_TRIGGER_TIME_ANNOTATION: trigger},
                "ownerReferences": [owner_reference(
                    {**service, "apiVersion": "v1", "kind": "Service"})],
            }
            created = await self.client.create(ENDPOINTSLICES, body,
                                               namespace=meta["namespace"])
            self.expectations.expect(key, creates=[object_key(created)])
            return
        body["metadata"] = {**current["metadata"], "labels": labels,
                            "annotations": {**(current["metadata"].get("annotations") or {}),
                                            LAST_CHANGE_TRIGGER_TIME_ANNOTATION: trigger}}
        await self.client.replace(ENDPOINTSLICES, body, namespace=meta["namespace"])

    async def _delete_all(self, key: str, slices: list[dict]) -> None:
        for endpoint_slice in slices:
            meta = endpoint_slice["metadata"]
            self.expectations.expect(key, deletes=[object_key(endpoint_slice)])
            with contextlib.suppress(NotFoundError):
                await self.client.delete(ENDPOINTSLICES, meta["name"],
                                         namespace=meta["namespace"],
                                         preconditions={"uid": meta["uid"]})


def _owned_by(endpoint_slice: Mapping, service: Mapping) -> bool:
    uid = service["metadata"].get("uid")
    return any(ref.get("uid") == uid
               for ref in endpoint_slice["metadata"].get("ownerReferences") or [])


def _same_content(current: Mapping, content: Mapping, service: Mapping) -> bool:
    labels = labels_of(current)
    wanted_labels = {**labels_of(service), SERVICE_NAME_LABEL: service["metadata"]["name"],
                     MANAGED_BY_LABEL: ENDPOINTSLICE_CONTROLLER_NAME}
    return (labels == wanted_labels
            and current.get("addressType") == content["addressType"]
            and (current.get("endpoints") or []) == content["endpoints"]
            and (current.get("ports") or []) == content["ports"])
