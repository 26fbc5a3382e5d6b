"""The resource table the clients use: which group/version/plural each kind lives at.

A `Resource` knows how to build its REST path, so no caller ever formats a URL by hand.
Core ("") group resources live under /api/v1, everything else under /apis/<group>/<version>.
A namespaced resource without a namespace addresses all namespaces (list/watch only).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ALL_RESOURCES",
    "CLUSTERROLES",
    "CONFIGMAPS",
    "DEPLOYMENTS",
    "ENDPOINTS",
    "ENDPOINTSLICES",
    "EVENTS",
    "LEASES",
    "NAMESPACES",
    "NODES",
    "PODS",
    "REPLICASETS",
    "SECRETS",
    "SERVICEACCOUNTS",
    "SERVICES",
    "Resource",
    "resource_for_kind",
]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """ "v1" for the core group, "apps/v1" otherwise (the objects' apiVersion field)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def path(
        self,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The REST path, e.g. /api/v1/namespaces/ns/pods/name/status."""
        if namespace and not self.namespaced:
            raise ValueError(f"{self.plural} are cluster-scoped; no namespace allowed")
        if subresource and not name:
            raise ValueError(f"subresource {subresource!r} of {self.plural} needs a name")
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [base]
        if namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


PODS = Resource("", "v1", "pods", "Pod", namespaced=True)
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
SERVICES = Resource("", "v1", "services", "Service", namespaced=True)
ENDPOINTS = Resource("", "v1", "endpoints", "Endpoints", namespaced=True)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
EVENTS = Resource("", "v1", "events", "Event", namespaced=True)
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap", namespaced=True)
SECRETS = Resource("", "v1", "secrets", "Secret", namespaced=True)
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount", namespaced=True)
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True)
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment", namespaced=True)
REPLICASETS = Resource("apps", "v1", "replicasets", "ReplicaSet", namespaced=True)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)
# Not in ALL_RESOURCES (the fake apiserver in apiclient.testing does not serve RBAC).
CLUSTERROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole",
                        namespaced=False)

ALL_RESOURCES: tuple[Resource, ...] = (
    PODS,
    NODES,
    SERVICES,
    ENDPOINTS,
    NAMESPACES,
    EVENTS,
    CONFIGMAPS,
    SECRETS,
    SERVICEACCOUNTS,
    ENDPOINTSLICES,
    DEPLOYMENTS,
    REPLICASETS,
    LEASES,
)


def resource_for_kind(api_version: str, kind: str) -> Resource:
    """Look up a resource by (apiVersion, kind), e.g. ("apps/v1", "Deployment")."""
    for resource in ALL_RESOURCES:
        if resource.api_version == api_version and resource.kind == kind:
            return resource
    raise KeyError(f"no resource known for apiVersion {api_version!r} kind {kind!r}")
