"""The resource paths described in the OpenAPI documents, derived from the registry.

The documents need, per resource, its group/version, plural, kind, scope and
subresources with the HTTP operations they accept; all of it comes from
:mod:`apiserver.registry`, so a resource added there is documented without a second edit.
"""

from __future__ import annotations

from dataclasses import dataclass

from apiserver import registry
from apiserver.registry import SUBRESOURCE_VERBS, subresource_kind


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
    verbs: tuple[str, ...] = ()  # the discovery verbs of the resource itself

    @property
    def group_version_path(self) -> str:
        """The key of the v3 document: "api/v1" or "apis/<group>/<version>"."""
        return f"apis/{self.group}/{self.version}" if self.group else f"api/{self.version}"


# Discovery verbs -> the HTTP operations the documents describe.
_OPERATIONS = {"get": "get", "update": "put", "patch": "patch", "create": "post"}

RESOURCES: tuple[Resource, ...] = tuple(
    Resource(rt.group, rt.version, rt.plural, rt.kind, rt.namespaced, tuple(
        Subresource(sub, *subresource_kind(rt, sub),
                    tuple(_OPERATIONS[verb] for verb in SUBRESOURCE_VERBS[sub]))
        for sub in sorted(rt.subresources)), rt.verbs)
    for rt in registry.RESOURCES
)
