"""The Endpoints controller: the core/v1 Endpoints mirror of a Service's pods.

Kubernetes' ``pkg/controller/endpoint`` in small, for the clients that still read
Endpoints. It shares the event wiring, the endpoint computation and the trigger times
with the EndpointSlice controller, so both objects always describe the same pods.

Invariants:
- One Endpoints object per Service with a selector, named like the Service, labelled with
  the Service's labels plus ``endpointslice.kubernetes.io/skip-mirror: "true"`` (the
  mirroring controller must not turn it back into slices). Services without a selector
  are left to their users.
- Ready pods go to ``addresses``, the others to ``notReadyAddresses``; terminating pods
  are left out (unless ``publishNotReadyAddresses``). Pods with the same resolved ports
  share a subset (RepackSubsets); addresses are sorted by IP so an unchanged world gives
  an identical object and no write.
- When the Service is gone, its Endpoints object goes too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from apiclient.client import ApiClient
from apiclient.controller import SharedInformers
from apiclient.errors import NotFoundError
from apiclient.labels import LAST_CHANGE_TRIGGER_TIME_ANNOTATION, SKIP_MIRROR_LABEL
from apiclient.meta import split_key
from apiclient.resources import ENDPOINTS
from controllers.endpointslice import (
    ServicePodsController,
    has_selector,
    pod_endpoints,
    selected_pods,
)
from controllers.ownership import labels_of

__all__ = ["EndpointsController", "desired_subsets"]



def desired_subsets(service: Mapping, pods: list[dict]) -> list[dict]:
    publish_not_ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for endpoint in pod_endpoints(service, pods):
        if endpoint.terminating and not publish_not_ready:
            continue
        address: dict = {"ip": endpoint.ip, "targetRef": endpoint.target_ref()}
        node = (endpoint.pod.get("spec") or {}).get("nodeName")
        if node:
            address["nodeName"] = node
        group = groups.setdefault(endpoint.ports, {"addresses": [], "notReadyAddresses": []})
        group["addresses" if endpoint.ready else "notReadyAddresses"].append(address)
    subsets = []
    for ports, group in sorted(groups.items(), key=lambda item: str(item[0])):
        subset: dict = {}
        for field in ("addresses", "notReadyAddresses"):
            if group[field]:
                subset[field] = sorted(group[field], key=lambda a: (a["ip"],
                                                                    a["targetRef"]["uid"]))
        if ports:
            subset["ports"] = [{"name": name, "port": port, "protocol": protocol}
                               if name else {"port": port, "protocol": protocol}
                               for name, port, protocol in ports]
        subsets.append(subset)
    return subsets


class EndpointsController(ServicePodsController):
    name = "endpoints"
    workers = 4

    def __init__(self, client: ApiClient, informers: SharedInformers) -> None:
        super().__init__(client, informers)
        self.endpoints = informers.informer(ENDPOINTS)
        # An Endpoints object edited or deleted by someone else is put back.
        self.endpoints.add_handler(on_update=lambda _old, new: self._on_endpoints(new),
                                   on_delete=self._on_endpoints)

    def _on_endpoints(self, endpoints: dict) -> None:
        if labels_of(endpoints).get(SKIP_MIRROR_LABEL) == "true":
            self.enqueue(f"{endpoints['metadata'].get('namespace')}/"
                         f"{endpoints['metadata']['name']}")

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        service = self.services.store.get(key)
        current = self.endpoints.store.get(key)
        if service is None:
            self.trigger_times.take(key)
            if current is not None:
                with contextlib.suppress(NotFoundError):
                    await self.client.delete(ENDPOINTS, name, namespace=namespace,
                                             preconditions={"uid": current["metadata"]["uid"]})
            return
        if not has_selector(service) or service["metadata"].get("deletionTimestamp"):
            return
        pods = selected_pods(service, self.pods_in(namespace or ""))
        subsets = desired_subsets(service, pods)
        labels = {**labels_of(service), SKIP_MIRROR_LABEL: "true"}
        if current is not None and (current.get("subsets") or []) == subsets \
                and labels_of(current) == labels:
            return
        annotations = dict((current or {}).get("metadata", {}).get("annotations") or {})
        annotations[LAST_CHANGE_TRIGGER_TIME_ANNOTATION] = self.trigger_time(key, service, pods)
        body = {"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": namespace, "labels": labels,
                             "annotations": annotations},
                "subsets": subsets}
        if current is None:
            # AlreadyExists (made by a pass the cache has not shown yet) is retried.
            await self.client.create(ENDPOINTS, body, namespace=namespace)
            return
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await self.client.replace(ENDPOINTS, body, namespace=namespace)
