"""The root CA publisher: a ``kube-root-ca.crt`` ConfigMap in every namespace.

kube's ``pkg/controller/certificates/rootcacertpublisher``: every namespace gets the
ConfigMap ``kube-root-ca.crt`` whose ``ca.crt`` is the cluster CA (PEM), so that a pod's
projected API access volume can give its containers the CA that verifies the apiserver.
The CA is the one this controller manager trusts: its kubeconfig's
``certificate-authority-data`` (kube-controller-manager's ``--root-ca-file``).

Invariants:
- The key is the namespace name; a namespace event or a change to (or deletion of) a
  ``kube-root-ca.crt`` enqueues it. :func:`desired_configmap` and :func:`needs_update`
  decide; a ConfigMap edited by someone is put back, one deleted is created again.
- A terminating namespace gets nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from apiclient.client import ApiClient
from apiclient.controller import Controller, SharedInformers
from apiclient.errors import AlreadyExistsError, ForbiddenError, NotFoundError
from apiclient.resources import CONFIGMAPS, NAMESPACES
from controllers.serviceaccounts import is_active

__all__ = ["ROOT_CA_CONFIGMAP", "RootCACertPublisher", "desired_configmap", "needs_update",
           "updated_configmap"]

log = logging.getLogger(__name__)

ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
CA_KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using "
               "internal endpoints such as the internal service IP or kubernetes.default.svc. "
               "No other usage is guaranteed across distributions of Kubernetes clusters.")


def desired_configmap(namespace: str, ca_pem: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": namespace,
                         "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
            "data": {CA_KEY: ca_pem}}


def needs_update(current: Mapping[str, Any], ca_pem: str) -> bool:
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    return current.get("data") != {CA_KEY: ca_pem} or \
        annotations.get(DESCRIPTION_ANNOTATION) != DESCRIPTION


def updated_configmap(current: Mapping[str, Any], ca_pem: str) -> dict:
    """``current`` with kube's data and annotation (other metadata kept, resourceVersion
    too, so a concurrent change makes the write conflict and retry)."""
    meta = dict(current.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), DESCRIPTION_ANNOTATION: DESCRIPTION}
    body = {key: value for key, value in current.items() if key != "binaryData"}
    return {**body, "metadata": meta, "data": {CA_KEY: ca_pem}}


class RootCACertPublisher(Controller):
    name = "root-ca-cert-publisher"
    workers = 2

    def __init__(self, client: ApiClient, informers: SharedInformers) -> None:
        super().__init__(client, informers)
        self._ca_pem: str | None = None  # read from the client's kubeconfig on first use
        self.namespaces = informers.informer(NAMESPACES)
        self.namespaces.add_handler(on_add=self._namespace_event,
                                    on_update=lambda _old, new: self._namespace_event(new))
        self.configmaps = informers.informer(CONFIGMAPS,
                                             field_selector=f"metadata.name={ROOT_CA_CONFIGMAP}")
        self.configmaps.add_handler(on_update=lambda _old, new: self._configmap_event(new),
                                    on_delete=self._configmap_event)

    @property
    def ca_pem(self) -> str:
        if self._ca_pem is None:
            ca = self.client.config.ca_data
            self._ca_pem = ca.decode() if ca else ""
            if not self._ca_pem:
                log.warning("root-ca-cert-publisher: the kubeconfig has no "
                            "certificate-authority data; no %s ConfigMaps will be published",
                            ROOT_CA_CONFIGMAP)
        return self._ca_pem

    def _namespace_event(self, namespace: dict) -> None:
        self.enqueue(namespace["metadata"]["name"])

    def _configmap_event(self, configmap: dict) -> None:
        namespace = (configmap.get("metadata") or {}).get("namespace")
        if namespace:
            self.enqueue(namespace)

    async def reconcile(self, key: str) -> None:
        namespace = self.namespaces.store.get(key)
        if not self.ca_pem or namespace is None or not is_active(namespace):
            return
        current = self.configmaps.store.get(f"{key}/{ROOT_CA_CONFIGMAP}")
        try:
            if current is None:
                await self.client.create(CONFIGMAPS, desired_configmap(key, self.ca_pem),
                                         namespace=key)
            elif needs_update(current, self.ca_pem):
                await self.client.replace(CONFIGMAPS, updated_configmap(current, self.ca_pem),
                                          namespace=key)
        except AlreadyExistsError:
            self.enqueue(key, after=0.5)  # it appeared meanwhile: check its content
        except (ForbiddenError, NotFoundError):
            return  # the namespace is terminating or gone
