"""The resource table: every served resource is one :class:`ResourceType` entry.

Why a table: handlers (CRUD, watch, discovery, Table output, OpenAPI, metrics) are
generic and read everything resource-specific from here — names, scope, subresources,
printed columns, selectable fields and the kind's :mod:`strategy <apiserver.strategies>`
(defaulting, validation, status handling, graceful deletion, allocations). Adding a
resource is one entry (plus a strategy module if the kind has behaviour of its own), not
a new handler.

Storage keys follow kube-apiserver's layout: ``/registry/<group or core>/<plural>/``
then ``<namespace>/<name>`` for namespaced resources or ``<name>`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apiserver import printers
from apiserver.admission import defaulting, validation
from apiserver.strategies import (
    StatusStrategy,
    Strategy,
    namespaces,
    nodes,
    pods,
    rbac,
    secrets,
    serviceaccounts,
    services,
)

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Column:
    """One printed column of ``kubectl get`` (a Table column definition + its getter)."""

    name: str
    getter: Callable[[Obj], Any]
    type: str = "string"
    format: str = ""
    priority: int = 0  # 1 = shown only with ``-o wide``
    description: str = ""


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    columns: tuple[Column, ...] = ()
    # Selectable fields beyond metadata.name / metadata.namespace (field selectors).
    fields: Mapping[str, Callable[[Obj], str]] = field(default_factory=dict)
    # What the REST store does differently for this kind (defaulting, validation,
    # initial status, graceful deletion, allocations); a StatusStrategy with ``status``.
    strategy: Strategy = field(default_factory=Strategy)
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list",
                              "patch", "update", "watch")

    def __post_init__(self) -> None:
        if self.has_status != isinstance(self.strategy, StatusStrategy):
            raise TypeError(f"{self.plural}: a resource has a status subresource exactly "
                            "when its strategy is a StatusStrategy")

    @property
    def has_status(self) -> bool:
        """Spec and status are written through separate endpoints: the main resource
        ignores status changes and ``/status`` ignores everything but status."""
        return "status" in self.subresources

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def prefix(self) -> str:
        return f"/registry/{self.group or 'core'}/{self.plural}/"

    def key(self, namespace: str | None, name: str) -> str:
        return f"{self.prefix}{namespace}/{name}" if self.namespaced else f"{self.prefix}{name}"

    def namespace_prefix(self, namespace: str | None) -> str:
        return f"{self.prefix}{namespace}/" if self.namespaced and namespace else self.prefix

    def selectable_fields(self, obj: Obj) -> dict[str, str]:
        meta = obj.get("metadata") or {}
        values = {"metadata.name": meta.get("name", "")}
        if self.namespaced:
            values["metadata.namespace"] = meta.get("namespace", "")
        for name, getter in self.fields.items():
            value = getter(obj)
            values[name] = "" if value is None else str(value)
        return values


def _path(*keys: str, missing: Any = "") -> Callable[[Obj], Any]:
    """A getter for a nested field, ``missing`` when any step is absent."""

    def get(obj: Obj) -> Any:
        value: Any = obj
        for key in keys:
            if not isinstance(value, dict):
                return missing
            value = value.get(key)
        if isinstance(value, bool):
            return "true" if value else "false"
        return missing if value is None else value if missing == 0 else str(value)

    return get


SUBRESOURCE_VERBS: Mapping[str, tuple[str, ...]] = {
    "status": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "binding": ("create",),
    "log": ("get",),
    "finalize": ("update",),
    "token": ("create",),
}


def subresource_kind(rt: ResourceType, subresource: str) -> tuple[str, str, str]:
    """(group, version, kind) of the object a subresource reads and writes."""
    if subresource == "scale":
        return "autoscaling", "v1", "Scale"
    if subresource == "binding":
        return "", "v1", "Binding"
    if subresource == "token":
        return "authentication.k8s.io", "v1", "TokenRequest"
    return rt.group, rt.version, rt.kind


def _fields(*names: str) -> dict[str, Callable[[Obj], Any]]:
    """Selectable fields read from the object at their own dotted path."""
    return {name: _path(*name.split(".")) for name in names}


NAME = Column("Name", printers.name, format="name", description="Name of the object")
AGE = Column("Age", printers.age, description="Time since the object was created")
CREATED_AT = Column("Created At", printers.created_at, type="date",
                   description="Time the object was created")
BINDING_COLUMNS = (NAME, Column("Role", printers.binding_role), AGE,
                   Column("Users", printers.binding_users, priority=1,
                          description="Users in the roleBinding"),
                   Column("Groups", printers.binding_groups, priority=1,
                          description="Groups in the roleBinding"),
                   Column("ServiceAccounts", printers.binding_service_accounts, priority=1,
                          description="ServiceAccounts in the roleBinding"))
# The ``-o wide`` columns of workloads with a pod template.
TEMPLATE_COLUMNS = (Column("Containers", printers.template_containers, priority=1),
                    Column("Images", printers.template_images, priority=1),
                    Column("Selector", printers.spec_selector, priority=1))

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        "", "v1", "Namespace", "namespaces", False, short_names=("ns",),
        subresources=frozenset({"status", "finalize"}),
        columns=(NAME, Column("Status", _path("status", "phase")), AGE),
        fields=_fields("status.phase"),
        strategy=namespaces.STRATEGY,
    ),
    ResourceType(
        "", "v1", "Node", "nodes", False, short_names=("no",),
        subresources=frozenset({"status"}),
        columns=(NAME, Column("Status", printers.node_status), Column("Roles", printers.node_roles),
                 AGE, Column("Version", _path("status", "nodeInfo", "kubeletVersion")),
                 Column("Internal-IP", printers.node_internal_ip, priority=1),
                 Column("External-IP", printers.node_external_ip, priority=1),
                 Column("OS-Image", _path("status", "nodeInfo", "osImage"), priority=1),
                 Column("Kernel-Version", _path("status", "nodeInfo", "kernelVersion"),
                        priority=1),
                 Column("Container-Runtime",
                        _path("status", "nodeInfo", "containerRuntimeVersion"), priority=1)),
        fields=_fields("spec.unschedulable"),
        strategy=nodes.STRATEGY,
    ),
    ResourceType(
        "", "v1", "Pod", "pods", True, short_names=("po",), categories=("all",),
        subresources=frozenset({"status", "binding", "log"}),
        columns=(NAME, Column("Ready", printers.pod_ready), Column("Status", printers.pod_status),
                 Column("Restarts", printers.pod_restarts), AGE,
                 Column("IP", printers.pod_ip, priority=1),
                 Column("Node", printers.pod_node, priority=1),
                 Column("Nominated Node", printers.pod_nominated_node, priority=1),
                 Column("Readiness Gates", printers.pod_readiness_gates, priority=1)),
        fields=_fields("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                       "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                       "status.podIP", "status.nominatedNodeName"),
        strategy=pods.STRATEGY,
    ),
    ResourceType(
        "", "v1", "Service", "services", True, short_names=("svc",), categories=("all",),
        subresources=frozenset({"status"}),
        columns=(NAME, Column("Type", _path("spec", "type")),
                 Column("Cluster-IP", _path("spec", "clusterIP")),
                 Column("External-IP", printers.service_external_ip),
                 Column("Port(s)", printers.service_ports), AGE,
                 Column("Selector", printers.service_selector, priority=1)),
        fields=_fields("spec.clusterIP", "spec.type"),
        strategy=services.STRATEGY,
    ),
    ResourceType(
        "", "v1", "Endpoints", "endpoints", True, short_names=("ep",),
        columns=(NAME, Column("Endpoints", printers.endpoints_summary), AGE),
        strategy=Strategy(validate=validation.endpoints, create_on_update=True),
    ),
    ResourceType(
        "", "v1", "Event", "events", True, short_names=("ev",),
        columns=(Column("Last Seen", printers.event_last_seen), Column("Type", _path("type")),
                 Column("Reason", _path("reason")), Column("Object", printers.event_object),
                 Column("Subobject", _path("involvedObject", "fieldPath"), priority=1),
                 Column("Source", printers.event_source, priority=1),
                 Column("Message", _path("message")),
                 Column("First Seen", printers.event_first_seen, priority=1),
                 Column("Count", printers.event_count, priority=1),
                 Column("Name", printers.name, priority=1)),
        fields={**_fields("involvedObject.kind", "involvedObject.namespace",
                          "involvedObject.name", "involvedObject.uid",
                          "involvedObject.fieldPath", "reason", "type"),
                "source": _path("source", "component")},
        strategy=Strategy(default=defaulting.event, validate=validation.event,
                          create_on_update=True),
    ),
    ResourceType(
        "", "v1", "ConfigMap", "configmaps", True, short_names=("cm",),
        columns=(NAME, Column("Data", printers.configmap_data, type="integer"), AGE),
        strategy=Strategy(validate=validation.configmap),
    ),
    ResourceType(
        "", "v1", "Secret", "secrets", True,
        columns=(NAME, Column("Type", _path("type")),
                 Column("Data", printers.secret_data, type="integer"), AGE),
        fields=_fields("type"),
        strategy=secrets.STRATEGY,
    ),
    ResourceType(
        "", "v1", "ServiceAccount", "serviceaccounts", True, short_names=("sa",),
        subresources=frozenset({"token"}),
        columns=(NAME, Column("Secrets", printers.serviceaccount_secrets, type="integer"), AGE),
        strategy=serviceaccounts.STRATEGY,
    ),
    ResourceType(
        "discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True,
        columns=(NAME, Column("AddressType", _path("addressType")),
                 Column("Ports", printers.endpointslice_ports),
                 Column("Endpoints", printers.endpointslice_endpoints), AGE),
        strategy=Strategy(validate=validation.endpointslice),
    ),
    ResourceType(
        "apps", "v1", "Deployment", "deployments", True, short_names=("deploy",),
        categories=("all",), subresources=frozenset({"status", "scale"}),
        columns=(NAME, Column("Ready", printers.deployment_ready),
                 Column("Up-to-date", _path("status", "updatedReplicas", missing=0),
                        type="integer"),
                 Column("Available", _path("status", "availableReplicas", missing=0),
                        type="integer"), AGE, *TEMPLATE_COLUMNS),
        strategy=StatusStrategy(default=defaulting.deployment, validate=validation.deployment),
    ),
    ResourceType(
        "apps", "v1", "ReplicaSet", "replicasets", True, short_names=("rs",),
        categories=("all",), subresources=frozenset({"status", "scale"}),
        columns=(NAME, Column("Desired", _path("spec", "replicas", missing=0), type="integer"),
                 Column("Current", printers.replicaset_current, type="integer"),
                 Column("Ready", printers.replicaset_ready, type="integer"), AGE,
                 *TEMPLATE_COLUMNS),
        fields=_fields("status.replicas"),
        # status.replicas is required (not omitempty) in ReplicaSetStatus
        strategy=StatusStrategy(status={"replicas": 0}, default=defaulting.replicaset,
                                validate=validation.replicaset),
    ),
    ResourceType(
        "coordination.k8s.io", "v1", "Lease", "leases", True,
        columns=(NAME, Column("Holder", _path("spec", "holderIdentity")), AGE),
        strategy=Strategy(validate=validation.lease),
    ),
    # Create-only and never stored: the answer is computed (apiserver.handlers.tokens).
    ResourceType(
        "authentication.k8s.io", "v1", "TokenReview", "tokenreviews", False,
        verbs=("create",),
    ),
    # RBAC (apiserver.strategies.rbac); the authorizer reads them from the watch cache.
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False,
        columns=(NAME, CREATED_AT), strategy=rbac.CLUSTER_ROLE,
    ),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False,
        columns=BINDING_COLUMNS, strategy=rbac.CLUSTER_ROLE_BINDING,
    ),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "Role", "roles", True,
        columns=(NAME, CREATED_AT), strategy=rbac.ROLE,
    ),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True,
        columns=BINDING_COLUMNS, strategy=rbac.ROLE_BINDING,
    ),
    # Create-only and never stored: answered by apiserver.handlers.reviews.
    ResourceType(
        "authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", False,
        verbs=("create",),
    ),
    ResourceType(
        "authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews",
        True, verbs=("create",),
    ),
    ResourceType(
        "authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
        False, verbs=("create",),
    ),
    ResourceType(
        "authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
        False, verbs=("create",),
    ),
    ResourceType(
        "authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", False,
        verbs=("create",),
    ),
)


class Registry:
    """Lookup of :data:`RESOURCES` by the ways requests and clients name them."""

    def __init__(self, resources: tuple[ResourceType, ...] = RESOURCES) -> None:
        self.resources = resources
        self._by_path = {(r.group, r.version, r.plural): r for r in resources}
        self._by_kind = {(r.group_version, r.kind): r for r in resources}

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((api_version, kind))

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> versions, core ('') included, in registration order."""
        groups: dict[str, list[str]] = {}
        for r in self.resources:
            versions = groups.setdefault(r.group, [])
            if r.version not in versions:
                versions.append(r.version)
        return groups

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [r for r in self.resources if r.group == group and r.version == version]
