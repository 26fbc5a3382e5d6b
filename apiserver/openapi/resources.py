"""The resource paths described in the OpenAPI documents.

A small table, not the apiserver's registry: the documents only need, per resource, its
group/version, plural, kind, scope and subresources, and must stay importable without the
rest of the apiserver. Keep it in step with the resources the apiserver serves
(ARCHITECTURE.md / INTERFACE.md list them).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Subresource:
    name: str  # "status", "scale", "binding", "log"
    group: str  # group/version/kind of the subresource's body (Scale is autoscaling/v1)
    version: str
    kind: str
    verbs: tuple[str, ...]  # among "get", "put", "patch", "post"


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: tuple[Subresource, ...] = ()

    @property
    def group_version_path(self) -> str:
        """The key of the v3 document: "api/v1" or "apis/<group>/<version>"."""
        return f"apis/{self.group}/{self.version}" if self.group else f"api/{self.version}"


def _status(group: str, version: str, kind: str) -> Subresource:
    return Subresource("status", group, version, kind, ("get", "put", "patch"))


_SCALE = Subresource("scale", "autoscaling", "v1", "Scale", ("get", "put", "patch"))

RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", False, (_status("", "v1", "Namespace"),)),
    Resource("", "v1", "nodes", "Node", False, (_status("", "v1", "Node"),)),
    Resource(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        (
            _status("", "v1", "Pod"),
            Subresource("binding", "", "v1", "Binding", ("post",)),
            Subresource("log", "", "v1", "Pod", ("get",)),
        ),
    ),
    Resource("", "v1", "services", "Service", True, (_status("", "v1", "Service"),)),
    Resource("", "v1", "endpoints", "Endpoints", True),
    Resource("", "v1", "events", "Event", True),
    Resource("", "v1", "configmaps", "ConfigMap", True),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Resource(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        (_status("apps", "v1", "Deployment"), _SCALE),
    ),
    Resource(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        True,
        (_status("apps", "v1", "ReplicaSet"), _SCALE),
    ),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
)
