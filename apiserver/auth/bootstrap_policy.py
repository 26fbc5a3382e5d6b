"""The default ClusterRoles and ClusterRoleBindings, and how they are kept in place.

Why: kube-apiserver writes its bootstrap RBAC policy at every start (the
``rbac/bootstrap-roles`` post-start hook over ``plugin/pkg/auth/authorizer/rbac/
bootstrappolicy``): ``cluster-admin`` for ``system:masters``, the aggregated
``admin``/``edit``/``view`` roles users bind in namespaces, discovery and health for
everyone, and one role per control-plane identity. Users expect exactly these names and
these powers (``view`` cannot read Secrets, ``edit`` can, ``admin`` can also grant roles),
so this module renders them the way kube does and :func:`reconcile` merges them into what
is stored without taking anything away.

Differences from kube, on purpose:
- keelson's controller manager runs every controller as one identity
  (``system:kube-controller-manager``), instead of kube's one ServiceAccount per
  controller; so that role holds kube's base rules plus what our controllers call (see
  :data:`CONTROLLER_MANAGER_NEEDS`), and the per-controller ``system:controller:*`` roles
  are not created.
- Roles for things keelson does not run (heapster, kube-aggregator, volume provisioning,
  node-problem-detector, cloud controller) are left out.
- ``system:aggregated-metrics-reader`` (what metrics-server installs) is included,
  because keelson's apiserver serves ``metrics.k8s.io`` itself.

Invariants:
- Every object carries label ``kubernetes.io/bootstrapping: rbac-defaults`` and
  annotation ``rbac.authorization.kubernetes.io/autoupdate: "true"``.
- Rules are built like kube's ``NewRule(...).RuleOrDie()``: each list sorted and
  de-duplicated, so the stored objects read like a real cluster's.
- :func:`reconcile` never removes a rule, subject or label a user added, and leaves an
  object annotated ``autoupdate: "false"`` alone.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from apiserver.auth.authorizer import AUTHENTICATED_GROUP, PRIVILEGED_GROUP, UNAUTHENTICATED_GROUP
from apiserver.auth.node import node_rules
from apiserver.auth.rbac import (
    CLUSTER_ROLE,
    GROUP,
    RBAC_GROUP,
    SERVICE_ACCOUNT,
    USER,
    covers,
)

Obj = dict[str, Any]
Rule = dict[str, list[str]]

# Well-known names (to move to apiclient/labels.py when a second package needs them).
BOOTSTRAPPING_LABEL = "kubernetes.io/bootstrapping"
BOOTSTRAPPING_VALUE = "rbac-defaults"
AUTOUPDATE_ANNOTATION = "rbac.authorization.kubernetes.io/autoupdate"
AGGREGATE_TO_ADMIN = "rbac.authorization.k8s.io/aggregate-to-admin"
AGGREGATE_TO_EDIT = "rbac.authorization.k8s.io/aggregate-to-edit"
AGGREGATE_TO_VIEW = "rbac.authorization.k8s.io/aggregate-to-view"

# Well-known identities (k8s.io/apiserver/pkg/authentication/user).
KUBE_SCHEDULER = "system:kube-scheduler"
KUBE_CONTROLLER_MANAGER = "system:kube-controller-manager"
KUBE_PROXY = "system:kube-proxy"
MONITORING_GROUP = "system:monitoring"
ALL_SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"

READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection")
READ_WRITE = (*READ, *WRITE)

CORE = ""
APPS = "apps"
AUTHENTICATION = "authentication.k8s.io"
AUTHORIZATION = "authorization.k8s.io"
AUTOSCALING = "autoscaling"
BATCH = "batch"
CERTIFICATES = "certificates.k8s.io"
COORDINATION = "coordination.k8s.io"
DISCOVERY = "discovery.k8s.io"
EVENTS = "events.k8s.io"
EXTENSIONS = "extensions"
METRICS = "metrics.k8s.io"
NETWORKING = "networking.k8s.io"
POLICY = "policy"
STORAGE = "storage.k8s.io"


def rule(verbs: Iterable[str], groups: Iterable[str], resources: Iterable[str], *,
         names: Iterable[str] = ()) -> Rule:
    """A resource rule, lists sorted and unique (kube ``NewRule(...).RuleOrDie()``)."""
    built: Rule = {"verbs": sorted(set(verbs)), "apiGroups": sorted(set(groups)),
                   "resources": sorted(set(resources))}
    if names:
        built["resourceNames"] = sorted(set(names))
    return built


def url_rule(verbs: Iterable[str], urls: Iterable[str]) -> Rule:
    """A non-resource rule (kube ``NewRule(...).URLs(...)``)."""
    return {"verbs": sorted(set(verbs)), "nonResourceURLs": sorted(set(urls))}


def _events_rule() -> Rule:
    return rule(["create", "update", "patch"], [CORE, EVENTS], ["events"])


def _metadata(name: str, labels: Mapping[str, str] | None = None) -> Obj:
    return {"name": name,
            "labels": {**(labels or {}), BOOTSTRAPPING_LABEL: BOOTSTRAPPING_VALUE},
            "annotations": {AUTOUPDATE_ANNOTATION: "true"}}


def cluster_role(name: str, rules: list[Rule], *, labels: Mapping[str, str] | None = None,
                 aggregate_from: str | None = None) -> Obj:
    role: Obj = {"apiVersion": f"{RBAC_GROUP}/v1", "kind": CLUSTER_ROLE,
                 "metadata": _metadata(name, labels), "rules": rules}
    if aggregate_from is not None:
        role["aggregationRule"] = {"clusterRoleSelectors": [
            {"matchLabels": {aggregate_from: "true"}}]}
    return role


def _subject(kind: str, name: str, namespace: str = "") -> Obj:
    if kind == SERVICE_ACCOUNT:
        return {"kind": kind, "name": name, "namespace": namespace}
    return {"kind": kind, "apiGroup": RBAC_GROUP, "name": name}


def cluster_role_binding(role: str, *, users: Iterable[str] = (), groups: Iterable[str] = (),
                         service_accounts: Iterable[tuple[str, str]] = (),
                         name: str | None = None) -> Obj:
    """kube ``NewClusterBinding(role)``: named after the role unless ``name`` is given."""
    subjects = [*(_subject(GROUP, g) for g in groups), *(_subject(USER, u) for u in users),
                *(_subject(SERVICE_ACCOUNT, n, ns) for ns, n in service_accounts)]
    binding: Obj = {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding",
                    "metadata": _metadata(name or role),
                    "roleRef": {"apiGroup": RBAC_GROUP, "kind": CLUSTER_ROLE, "name": role}}
    if subjects:
        binding["subjects"] = subjects
    return binding


# --- the roles --------------------------------------------------------------------------------

def _aggregate_to_admin_rules() -> list[Rule]:
    return [
        rule(["create"], [AUTHORIZATION], ["localsubjectaccessreviews"]),
        rule(READ_WRITE, [RBAC_GROUP], ["roles", "rolebindings"]),
    ]


def _aggregate_to_edit_rules() -> list[Rule]:
    pod_exec = ["pods/attach", "pods/proxy", "pods/exec", "pods/portforward"]
    return [
        # Read on escalating resources.
        rule(READ, [CORE], [*pod_exec, "secrets", "services/proxy"]),
        rule(["impersonate"], [CORE], ["serviceaccounts"]),
        rule(WRITE, [CORE], ["pods", *pod_exec]),
        rule(["create"], [CORE], ["pods/eviction"]),
        rule(WRITE, [CORE], ["replicationcontrollers", "replicationcontrollers/scale",
                             "serviceaccounts", "services", "services/proxy",
                             "persistentvolumeclaims", "configmaps", "secrets"]),
        rule(["create"], [CORE], ["serviceaccounts/token"]),
        rule(WRITE, [APPS], ["statefulsets", "statefulsets/scale", "daemonsets", "deployments",
                             "deployments/scale", "deployments/rollback", "replicasets",
                             "replicasets/scale"]),
        rule(WRITE, [AUTOSCALING], ["horizontalpodautoscalers"]),
        rule(WRITE, [BATCH], ["jobs", "cronjobs"]),
        rule(WRITE, [EXTENSIONS], ["daemonsets", "deployments", "deployments/scale",
                                   "deployments/rollback", "ingresses", "replicasets",
                                   "replicasets/scale", "replicationcontrollers/scale",
                                   "networkpolicies"]),
        rule(WRITE, [POLICY], ["poddisruptionbudgets"]),
        rule(WRITE, [NETWORKING], ["networkpolicies", "ingresses"]),
    ]


def _aggregate_to_view_rules() -> list[Rule]:
    return [
        rule(READ, [CORE], ["pods", "replicationcontrollers", "replicationcontrollers/scale",
                            "serviceaccounts", "services", "services/status", "endpoints",
                            "persistentvolumeclaims", "persistentvolumeclaims/status",
                            "configmaps"]),
        rule(READ, [CORE], ["limitranges", "resourcequotas", "bindings", "events",
                            "pods/status", "resourcequotas/status", "namespaces/status",
                            "replicationcontrollers/status", "pods/log"]),
        # Read access to namespaces at the namespace scope means "this namespace".
        rule(READ, [CORE], ["namespaces"]),
        rule(READ, [DISCOVERY], ["endpointslices"]),
        rule(READ, [APPS], ["controllerrevisions", "statefulsets", "statefulsets/status",
                            "statefulsets/scale", "daemonsets", "daemonsets/status",
                            "deployments", "deployments/status", "deployments/scale",
                            "replicasets", "replicasets/status", "replicasets/scale"]),
        rule(READ, [AUTOSCALING], ["horizontalpodautoscalers",
                                   "horizontalpodautoscalers/status"]),
        rule(READ, [BATCH], ["jobs", "cronjobs", "cronjobs/status", "jobs/status"]),
        rule(READ, [EXTENSIONS], ["daemonsets", "daemonsets/status", "deployments",
                                  "deployments/scale", "deployments/status", "ingresses",
                                  "ingresses/status", "replicasets", "replicasets/scale",
                                  "replicasets/status", "replicationcontrollers/scale",
                                  "networkpolicies"]),
        rule(READ, [POLICY], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        rule(READ, [NETWORKING], ["networkpolicies", "ingresses", "ingresses/status"]),
    ]


def _kube_scheduler_rules() -> list[Rule]:
    return [
        _events_rule(),
        # Leader election.
        rule(["create"], [COORDINATION], ["leases"]),
        rule(["get", "update"], [COORDINATION], ["leases"], names=["kube-scheduler"]),
        rule(["create"], [CORE], ["endpoints"]),
        rule(["get", "update"], [CORE], ["endpoints"], names=["kube-scheduler"]),
        # Fundamental resources.
        rule(READ, [CORE], ["nodes"]),
        rule(["get", "list", "watch", "delete"], [CORE], ["pods"]),
        rule(["create"], [CORE], ["pods/binding", "bindings"]),
        rule(["patch", "update"], [CORE], ["pods/status"]),
        # Things that select pods, and things pods use.
        rule(READ, [CORE], ["services", "replicationcontrollers"]),
        rule(READ, [APPS, EXTENSIONS], ["replicasets"]),
        rule(READ, [APPS], ["statefulsets"]),
        rule(READ, [POLICY], ["poddisruptionbudgets"]),
        rule(READ, [CORE], ["persistentvolumeclaims", "persistentvolumes"]),
        rule(["create"], [AUTHENTICATION], ["tokenreviews"]),
        rule(["create"], [AUTHORIZATION], ["subjectaccessreviews"]),
        rule(READ, [STORAGE], ["csinodes", "csidrivers", "csistoragecapacities"]),
        rule(READ, [CORE], ["namespaces"]),
    ]


CONTROLLER_MANAGER_NEEDS: dict[str, list[Rule]] = {
    # Shared informers, leader election, and what every controller reports.
    "common": [
        _events_rule(),
        rule(["list", "watch"], ["*"], ["*"]),
        rule(["create"], [COORDINATION], ["leases"]),
        rule(["get", "update"], [COORDINATION], ["leases"], names=["kube-controller-manager"]),
        rule(["create"], [AUTHENTICATION], ["tokenreviews"]),
        rule(["create"], [AUTHORIZATION], ["subjectaccessreviews"]),
    ],
    "deployment": [
        rule(["get", "update", "patch"], [APPS], ["deployments"]),
        rule(["update", "patch"], [APPS], ["deployments/status", "deployments/finalizers"]),
        rule(["get", "create", "update", "patch", "delete"], [APPS], ["replicasets"]),
    ],
    "replicaset": [
        rule(["get", "update", "patch"], [APPS], ["replicasets"]),
        rule(["update", "patch"], [APPS], ["replicasets/status", "replicasets/finalizers"]),
        rule(["create", "delete", "patch"], [CORE], ["pods"]),
    ],
    "endpoints": [
        rule(["get", "create", "update", "delete"], [CORE], ["endpoints"]),
        rule(["create"], [CORE], ["endpoints/restricted"]),
    ],
    "endpointslice": [
        rule(["get", "create", "update", "delete"], [DISCOVERY], ["endpointslices"]),
        rule(["update"], [CORE], ["services/finalizers"]),
    ],
    "nodelifecycle": [
        rule(["get", "update", "patch", "delete"], [CORE], ["nodes"]),
        rule(["update", "patch"], [CORE], ["nodes/status", "pods/status"]),
        rule(["delete"], [CORE], ["pods"]),
    ],
    "nodeipam": [rule(["get", "update", "patch"], [CORE], ["nodes"])],
    # kube's generic-garbage-collector: reads, patches and deletes dependents of any kind.
    "garbagecollector": [
        rule(["get", "list", "watch", "patch", "update", "delete"], ["*"], ["*"]),
    ],
    "namespace": [
        rule(["get", "list", "watch", "delete"], [CORE], ["namespaces"]),
        rule(["update"], [CORE], ["namespaces/finalize", "namespaces/status"]),
        rule(["get", "list", "delete", "deletecollection"], ["*"], ["*"]),
    ],
    "serviceaccount": [
        rule(["create", "get", "update"], [CORE], ["serviceaccounts"]),
        rule(["create"], [CORE], ["serviceaccounts/token"]),
        rule(["get", "create", "update", "delete"], [CORE], ["secrets"]),
        rule(["get"], [CORE], ["configmaps"]),
    ],
    # kube's root-ca-cert-publisher: kube-root-ca.crt in every namespace.
    "root-ca-cert-publisher": [rule(["create", "update"], [CORE], ["configmaps"])],
    "daemonset": [
        rule(["get", "update"], [APPS, EXTENSIONS], ["daemonsets"]),
        rule(["update"], [APPS, EXTENSIONS], ["daemonsets/status", "daemonsets/finalizers"]),
        rule(["create", "delete", "patch"], [CORE], ["pods"]),
        rule(["create"], [CORE], ["pods/binding"]),
        rule(["get", "create", "delete", "update", "patch"], [APPS], ["controllerrevisions"]),
    ],
    "job": [
        rule(["get", "update", "patch"], [BATCH], ["jobs"]),
        rule(["update", "patch"], [BATCH], ["jobs/status", "jobs/finalizers"]),
        rule(["create", "delete", "patch"], [CORE], ["pods"]),
    ],
    "cronjob": [
        rule(["get", "update"], [BATCH], ["cronjobs"]),
        rule(["get", "create", "update", "patch", "delete"], [BATCH], ["jobs"]),
        rule(["update"], [BATCH], ["cronjobs/status", "cronjobs/finalizers"]),
        rule(["delete"], [CORE], ["pods"]),
    ],
    "certificatesigningrequest": [
        rule(["get"], [CERTIFICATES], ["certificatesigningrequests"]),
        rule(["update"], [CERTIFICATES], ["certificatesigningrequests/approval",
                                          "certificatesigningrequests/status"]),
        rule(["approve"], [CERTIFICATES], ["signers"],
             names=["kubernetes.io/kube-apiserver-client-kubelet"]),
        rule(["sign"], [CERTIFICATES], ["signers"],
             names=["kubernetes.io/kube-apiserver-client",
                    "kubernetes.io/kube-apiserver-client-kubelet",
                    "kubernetes.io/kubelet-serving", "kubernetes.io/legacy-unknown"]),
    ],
    # The ClusterRole aggregation controller writes rules it does not itself hold.
    "clusterrole-aggregation": [
        rule(["escalate", "get", "list", "watch", "update", "patch"], [RBAC_GROUP],
             ["clusterroles"]),
    ],
}
"""What ``system:kube-controller-manager`` needs, per controller (kube's controller
roles in ``controller_policy.go``, for the controllers keelson runs or is adding)."""


def _controller_manager_rules() -> list[Rule]:
    return [r for rules in CONTROLLER_MANAGER_NEEDS.values() for r in rules]


def _node_rules() -> list[Rule]:
    return [rule(r["verbs"], r["apiGroups"], r["resources"]) for r in node_rules()]


def _certificate_roles() -> list[Obj]:
    roles = [
        cluster_role("system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                     [rule(["create"], [CERTIFICATES],
                           ["certificatesigningrequests/nodeclient"])]),
        cluster_role("system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                     [rule(["create"], [CERTIFICATES],
                           ["certificatesigningrequests/selfnodeclient"])]),
    ]
    for role, signer in (("legacy-unknown-approver", "legacy-unknown"),
                         ("kubelet-serving-approver", "kubelet-serving"),
                         ("kube-apiserver-client-approver", "kube-apiserver-client"),
                         ("kube-apiserver-client-kubelet-approver",
                          "kube-apiserver-client-kubelet")):
        roles.append(cluster_role(f"system:certificates.k8s.io:{role}", [
            rule(["approve"], [CERTIFICATES], ["signers"], names=[f"kubernetes.io/{signer}"])]))
    return roles


def _access_roles() -> list[Obj]:
    """The user-facing roles: cluster-admin and the aggregated admin/edit/view."""
    return [
        cluster_role("cluster-admin", [rule(["*"], ["*"], ["*"]), url_rule(["*"], ["*"])]),
        cluster_role("admin", [], aggregate_from=AGGREGATE_TO_ADMIN),
        cluster_role("edit", [], labels={AGGREGATE_TO_ADMIN: "true"},
                     aggregate_from=AGGREGATE_TO_EDIT),
        cluster_role("view", [], labels={AGGREGATE_TO_EDIT: "true"},
                     aggregate_from=AGGREGATE_TO_VIEW),
        cluster_role("system:aggregate-to-admin", _aggregate_to_admin_rules(),
                     labels={AGGREGATE_TO_ADMIN: "true"}),
        cluster_role("system:aggregate-to-edit", _aggregate_to_edit_rules(),
                     labels={AGGREGATE_TO_EDIT: "true"}),
        cluster_role("system:aggregate-to-view", _aggregate_to_view_rules(),
                     labels={AGGREGATE_TO_VIEW: "true"}),
        cluster_role("system:aggregated-metrics-reader",
                     [rule(READ, [METRICS], ["pods", "nodes"])],
                     labels={AGGREGATE_TO_VIEW: "true", AGGREGATE_TO_EDIT: "true",
                             AGGREGATE_TO_ADMIN: "true"}),
    ]


def _everyone_roles() -> list[Obj]:
    """Discovery, health, self-review: what every caller may do."""
    health = ["/livez", "/readyz", "/healthz", "/version", "/version/"]
    return [
        cluster_role("system:monitoring", [url_rule(["get"], [
            "/metrics", "/metrics/slis", "/livez", "/readyz", "/healthz",
            "/livez/*", "/readyz/*", "/healthz/*"])]),
        cluster_role("system:discovery", [url_rule(["get"], [
            *health, "/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*"])]),
        cluster_role("system:basic-user", [
            rule(["create"], [AUTHORIZATION],
                 ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
            rule(["create"], [AUTHENTICATION], ["selfsubjectreviews"])]),
        cluster_role("system:public-info-viewer", [url_rule(["get"], health)]),
        cluster_role("system:service-account-issuer-discovery", [url_rule(["get"], [
            "/.well-known/openid-configuration", "/.well-known/openid-configuration/",
            "/openid/v1/jwks", "/openid/v1/jwks/"])]),
        cluster_role("system:auth-delegator", [
            rule(["create"], [AUTHENTICATION], ["tokenreviews"]),
            rule(["create"], [AUTHORIZATION], ["subjectaccessreviews"])]),
    ]


def _component_roles() -> list[Obj]:
    """One role per control-plane or node identity."""
    return [
        cluster_role("system:node", _node_rules()),
        cluster_role("system:node-bootstrapper", [
            rule(["create", "get", "list", "watch"], [CERTIFICATES],
                 ["certificatesigningrequests"])]),
        cluster_role("system:kubelet-api-admin", [
            rule(READ, [CORE], ["nodes"]),
            rule(["proxy"], [CORE], ["nodes"]),
            rule(["*"], [CORE], ["nodes/proxy", "nodes/metrics", "nodes/spec", "nodes/stats",
                                 "nodes/log"])]),
        cluster_role("system:node-proxier", [
            rule(["list", "watch"], [CORE], ["services", "endpoints"]),
            rule(READ, [CORE], ["nodes"]),
            _events_rule(),
            rule(["list", "watch"], [DISCOVERY], ["endpointslices"])]),
        cluster_role("system:kube-dns", [rule(["list", "watch"], [CORE],
                                              ["endpoints", "services"])]),
        cluster_role("system:kube-scheduler", _kube_scheduler_rules()),
        cluster_role("system:kube-controller-manager", _controller_manager_rules()),
        *_certificate_roles(),
    ]


def cluster_roles() -> list[Obj]:
    """The bootstrap ClusterRoles, as kube-apiserver writes them at start."""
    return [*_access_roles(), *_everyone_roles(), *_component_roles()]


def cluster_role_bindings() -> list[Obj]:
    """The bootstrap ClusterRoleBindings (kube ``ClusterRoleBindings()``)."""
    return [
        cluster_role_binding("cluster-admin", groups=[PRIVILEGED_GROUP]),
        cluster_role_binding("system:monitoring", groups=[MONITORING_GROUP]),
        cluster_role_binding("system:discovery", groups=[AUTHENTICATED_GROUP]),
        cluster_role_binding("system:basic-user", groups=[AUTHENTICATED_GROUP]),
        cluster_role_binding("system:public-info-viewer",
                             groups=[AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP]),
        cluster_role_binding("system:node-proxier", users=[KUBE_PROXY]),
        cluster_role_binding("system:kube-controller-manager", users=[KUBE_CONTROLLER_MANAGER]),
        cluster_role_binding("system:kube-dns", service_accounts=[("kube-system", "kube-dns")]),
        cluster_role_binding("system:kube-scheduler", users=[KUBE_SCHEDULER]),
        # Bound to nobody: the Node authorizer decides for kubelets (kube since 1.7).
        cluster_role_binding("system:node"),
        cluster_role_binding("system:service-account-issuer-discovery",
                             groups=[ALL_SERVICE_ACCOUNTS_GROUP]),
    ]


# --- reconciling (pkg/registry/rbac/reconciliation) ----------------------------------------

class Reconciled(NamedTuple):
    """What to do with one bootstrap object.

    ``operation`` is ``"none"``, ``"create"``, ``"update"`` or ``"recreate"`` (a binding
    whose roleRef changed: delete the stored one, create ``obj``, since roleRef is
    immutable). ``protected`` is True when the stored object is annotated
    ``autoupdate: "false"``; then ``operation`` says what kube would have done, but
    nothing must be written.
    """

    operation: str
    obj: Obj | None
    protected: bool = False


def _merge(wanted: Mapping[str, str] | None, existing: Mapping[str, str] | None
           ) -> dict[str, str] | None:
    if wanted is None and existing is None:
        return None
    return {**(wanted or {}), **(existing or {})}


def _merge_metadata(result: Obj, existing: Obj, wanted: Obj) -> bool:
    changed = False
    meta = result.setdefault("metadata", {})
    for key in ("annotations", "labels"):
        merged = _merge(wanted["metadata"].get(key), existing.get("metadata", {}).get(key))
        if merged != existing.get("metadata", {}).get(key):
            meta[key] = merged
            changed = True
    return changed


def _reconcile_role(existing: Obj, wanted: Obj) -> tuple[Obj, bool]:
    result = copy.deepcopy(existing)
    changed = _merge_metadata(result, existing, wanted)
    _, missing = covers(existing.get("rules") or [], wanted.get("rules") or [])
    if missing:
        result["rules"] = [*(existing.get("rules") or []), *missing]
        changed = True
    wanted_selectors = (wanted.get("aggregationRule") or {}).get("clusterRoleSelectors")
    if wanted_selectors:
        aggregation = copy.deepcopy(result.get("aggregationRule") or {})
        have = list(aggregation.get("clusterRoleSelectors") or [])
        extra = [s for s in wanted_selectors if not any(_same_selector(s, h) for h in have)]
        if extra:
            aggregation["clusterRoleSelectors"] = [*have, *copy.deepcopy(extra)]
            result["aggregationRule"] = aggregation
            changed = True
    return result, changed


def _same_selector(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    # Semantic equality: absent, null and empty are the same.
    return ((a.get("matchLabels") or {}) == (b.get("matchLabels") or {})
            and (a.get("matchExpressions") or []) == (b.get("matchExpressions") or []))


def _reconcile_binding(existing: Obj, wanted: Obj) -> tuple[str, Obj]:
    if _role_ref(existing) != _role_ref(wanted):
        return "recreate", copy.deepcopy(wanted)
    result = copy.deepcopy(existing)
    changed = _merge_metadata(result, existing, wanted)
    have = [_subject_key(s) for s in existing.get("subjects") or []]
    missing: list[Obj] = []
    for subject in wanted.get("subjects") or []:
        if _subject_key(subject) not in have and subject not in missing:
            missing.append(copy.deepcopy(subject))
    if missing:
        result["subjects"] = [*(existing.get("subjects") or []), *missing]
        changed = True
    return ("update" if changed else "none"), result


def _role_ref(binding: Obj) -> tuple[str, str, str]:
    ref = binding.get("roleRef") or {}
    return str(ref.get("apiGroup") or ""), str(ref.get("kind") or ""), str(ref.get("name") or "")


def _subject_key(subject: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(subject.get(k) or "") for k in ("kind", "apiGroup", "name", "namespace"))


def reconcile_result(existing: Obj | None, wanted: Obj) -> Reconciled:
    """kube's bootstrap reconciliation of one ClusterRole or (Cluster)RoleBinding, in
    "union" mode: missing rules, aggregation selectors, subjects, labels and annotations
    are added; nothing the stored object has is removed."""
    if existing is None:
        return Reconciled("create", copy.deepcopy(wanted))
    protected = (existing.get("metadata", {}).get("annotations") or {}).get(
        AUTOUPDATE_ANNOTATION) == "false"
    if "roleRef" in wanted:
        operation, obj = _reconcile_binding(existing, wanted)
    else:
        obj, changed = _reconcile_role(existing, wanted)
        operation = "update" if changed else "none"
    return Reconciled(operation, obj if operation != "none" else None, protected)


def reconcile(existing: Obj | None, wanted: Obj) -> Obj | None:
    """The object to write for a bootstrap object, or None to leave the stored one.

    A returned binding whose roleRef differs from the stored one must replace it by
    delete + create (see :func:`reconcile_result`, operation ``"recreate"``).
    """
    result = reconcile_result(existing, wanted)
    if result.protected or result.operation == "none":
        return None
    return result.obj


def bootstrap_objects() -> list[Obj]:
    """Every bootstrap object, roles before the bindings that name them."""
    return [*cluster_roles(), *cluster_role_bindings()]


# --- keelson's own additions --------------------------------------------------------------

NODE_PROXIER_BINDING = "keelson:node-proxier"


def keelson_cluster_role_bindings() -> list[Obj]:
    """Bindings kube does not have, because keelson runs differently.

    ``keelson:node-proxier`` binds ``system:node-proxier`` to the group ``system:nodes``:
    kube-proxy runs with its own ``system:kube-proxy`` credential, but keelson's node
    daemon runs the service proxy in-process with the node's credential, and the Node
    authorizer's rules do not include listing and watching EndpointSlices (a kubelet
    never needs them). The role grants only reads of Services, Endpoints, EndpointSlices
    and Nodes, and events: nothing a node could use to reach another node's Secrets.
    """
    return [cluster_role_binding("system:node-proxier", groups=["system:nodes"],
                                 name=NODE_PROXIER_BINDING)]
