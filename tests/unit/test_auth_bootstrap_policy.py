"""The bootstrap RBAC policy: what each default role allows, and reconciliation."""

from __future__ import annotations

import copy

import pytest

from apiclient.rbac import aggregate_all
from apiserver.auth.authn import UserInfo
from apiserver.auth.authorizer import Attributes, Decision
from apiserver.auth.bootstrap_policy import (
    AUTOUPDATE_ANNOTATION,
    BOOTSTRAPPING_LABEL,
    CONTROLLER_MANAGER_NEEDS,
    bootstrap_objects,
    cluster_role_bindings,
    cluster_roles,
    reconcile,
    reconcile_result,
)
from apiserver.auth.rbac import (
    RBAC_GROUP,
    RBACAuthorizer,
    RbacIndex,
    validate_cluster_role,
    validate_cluster_role_binding,
)

AUTHENTICATED = "system:authenticated"


def policy_authorizer(*extra) -> RBACAuthorizer:
    """The bootstrap policy as a fresh cluster has it once aggregation has run."""
    index = RbacIndex()
    for obj in [*bootstrap_objects(), *extra]:
        index.upsert(obj)
    for name, rules in aggregate_all(index.list_cluster_roles()).items():
        index.upsert({**index.get_cluster_role(name), "rules": rules})
    return RBACAuthorizer(index)


def bound(role: str, user: str, namespace: str = "shop") -> RBACAuthorizer:
    """The policy plus a RoleBinding of ``role`` to ``user`` in ``namespace``."""
    return policy_authorizer({
        "kind": "RoleBinding", "metadata": {"name": f"{user}-{role}", "namespace": namespace},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "User", "apiGroup": RBAC_GROUP, "name": user}]})


def can(rbac: RBACAuthorizer, user: UserInfo, verb: str, resource: str, *, group: str = "",
        sub: str = "", namespace: str = "shop", name: str = "") -> bool:
    attrs = Attributes(user=user, verb=verb, api_group=group, resource=resource,
                       subresource=sub, namespace=namespace, name=name)
    return rbac.authorize(attrs)[0] is Decision.ALLOW


def can_get_path(rbac: RBACAuthorizer, user: UserInfo, path: str) -> bool:
    attrs = Attributes(user=user, verb="get", resource_request=False, path=path)
    return rbac.authorize(attrs)[0] is Decision.ALLOW


def by_name(objs):
    return {obj["metadata"]["name"]: obj for obj in objs}


# --- shape ------------------------------------------------------------------------------------

def test_every_object_is_marked_and_valid():
    names = set()
    for obj in bootstrap_objects():
        meta = obj["metadata"]
        assert meta["labels"][BOOTSTRAPPING_LABEL] == "rbac-defaults"
        assert meta["annotations"] == {AUTOUPDATE_ANNOTATION: "true"}
        assert (obj["kind"], meta["name"]) not in names
        names.add((obj["kind"], meta["name"]))
        validate = validate_cluster_role if obj["kind"] == "ClusterRole" else \
            validate_cluster_role_binding
        assert validate(obj) == [], meta["name"]


def test_rules_are_sorted_and_unique_like_kubes_builder():
    for role in cluster_roles():
        for rule in role["rules"]:
            for values in rule.values():
                assert values == sorted(set(values)), (role["metadata"]["name"], rule)


def test_every_binding_names_a_bootstrap_role():
    roles = by_name(cluster_roles())
    for binding in cluster_role_bindings():
        assert binding["roleRef"]["name"] in roles


def test_aggregated_roles_and_their_labels():
    roles = by_name(cluster_roles())
    assert roles["admin"]["aggregationRule"] == {"clusterRoleSelectors": [
        {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]}
    assert roles["edit"]["metadata"]["labels"][
        "rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert roles["view"]["metadata"]["labels"][
        "rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert roles["admin"]["rules"] == roles["edit"]["rules"] == roles["view"]["rules"] == []
    assert roles["system:aggregate-to-view"]["metadata"]["labels"][
        "rbac.authorization.k8s.io/aggregate-to-view"] == "true"


def test_bindings_of_kube():
    bindings = by_name(cluster_role_bindings())

    def subjects(name):
        return [(s["kind"], s["name"]) for s in bindings[name].get("subjects", [])]

    assert subjects("cluster-admin") == [("Group", "system:masters")]
    assert subjects("system:public-info-viewer") == [("Group", AUTHENTICATED),
                                                     ("Group", "system:unauthenticated")]
    assert subjects("system:discovery") == [("Group", AUTHENTICATED)]
    assert subjects("system:basic-user") == [("Group", AUTHENTICATED)]
    assert subjects("system:kube-scheduler") == [("User", "system:kube-scheduler")]
    assert subjects("system:kube-controller-manager") == [
        ("User", "system:kube-controller-manager")]
    assert subjects("system:node-proxier") == [("User", "system:kube-proxy")]
    assert subjects("system:node") == []  # the Node authorizer decides for kubelets
    assert bindings["system:kube-dns"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "kube-dns", "namespace": "kube-system"}]


# --- what the roles allow ---------------------------------------------------------------------

ROOT = UserInfo("kubernetes-admin", ("system:masters", AUTHENTICATED))
ALICE = UserInfo("alice", (AUTHENTICATED,))
ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))


def test_cluster_admin_is_bound_to_system_masters():
    rbac = policy_authorizer()
    assert can(rbac, ROOT, "delete", "nodes", namespace="")
    assert can(rbac, ROOT, "escalate", "clusterroles", group=RBAC_GROUP, namespace="")
    assert can_get_path(rbac, ROOT, "/metrics")
    assert rbac.authorize(Attributes(user=ROOT, verb="get", resource="pods"))[1] == (
        'RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" '
        'to Group "system:masters"')


def test_everyone_may_discover_and_review_themselves():
    rbac = policy_authorizer()
    for path in ("/api", "/api/v1", "/apis/apps/v1", "/openapi/v2", "/version", "/healthz"):
        assert can_get_path(rbac, ALICE, path), path
    assert not can_get_path(rbac, ALICE, "/metrics")
    assert can(rbac, ALICE, "create", "selfsubjectaccessreviews", group="authorization.k8s.io",
               namespace="")
    assert can(rbac, ALICE, "create", "selfsubjectrulesreviews", group="authorization.k8s.io",
               namespace="")
    assert can(rbac, ALICE, "create", "selfsubjectreviews", group="authentication.k8s.io",
               namespace="")
    assert not can(rbac, ALICE, "list", "pods")
    for path in ("/healthz", "/livez", "/readyz", "/version", "/version/"):
        assert can_get_path(rbac, ANONYMOUS, path), path
    assert not can_get_path(rbac, ANONYMOUS, "/api")
    assert not can_get_path(rbac, ANONYMOUS, "/healthz/etcd")


@pytest.mark.parametrize(("role", "verb", "resource", "kwargs", "allowed"), [
    ("view", "get", "pods", {}, True),
    ("view", "update", "pods", {"sub": "status"}, False),
    ("view", "get", "pods", {"sub": "log"}, True),
    ("view", "get", "secrets", {}, False),
    ("view", "list", "secrets", {}, False),
    ("view", "create", "pods", {}, False),
    ("view", "list", "deployments", {"group": "apps"}, True),
    ("view", "list", "endpointslices", {"group": "discovery.k8s.io"}, True),
    ("view", "list", "pods", {"group": "metrics.k8s.io"}, True),
    ("view", "get", "namespaces", {"name": "shop"}, True),
    ("view", "create", "pods", {"sub": "exec"}, False),
    ("view", "list", "roles", {"group": RBAC_GROUP}, False),
    ("edit", "get", "secrets", {}, True),
    ("edit", "create", "secrets", {}, True),
    ("edit", "create", "pods", {"sub": "exec"}, True),
    ("edit", "create", "pods", {"sub": "portforward"}, True),
    ("edit", "create", "serviceaccounts", {"sub": "token"}, True),
    ("edit", "patch", "deployments", {"group": "apps"}, True),
    ("edit", "update", "deployments", {"group": "apps", "sub": "scale"}, True),
    ("edit", "update", "deployments", {"group": "apps", "sub": "status"}, False),
    ("edit", "create", "cronjobs", {"group": "batch"}, True),
    ("edit", "create", "endpoints", {}, False),  # CVE-2021-25740
    ("edit", "impersonate", "serviceaccounts", {}, True),
    ("edit", "create", "rolebindings", {"group": RBAC_GROUP}, False),
    ("edit", "list", "pods", {"group": "metrics.k8s.io"}, True),
    ("admin", "create", "rolebindings", {"group": RBAC_GROUP}, True),
    ("admin", "delete", "roles", {"group": RBAC_GROUP}, True),
    ("admin", "create", "localsubjectaccessreviews", {"group": "authorization.k8s.io"}, True),
    ("admin", "get", "secrets", {}, True),
    ("admin", "create", "pods", {"sub": "attach"}, True),
    ("admin", "update", "resourcequotas", {}, False),
    ("admin", "bind", "clusterroles", {"group": RBAC_GROUP}, False),
])
def test_namespace_roles_through_a_role_binding(role, verb, resource, kwargs, allowed):
    rbac = bound(role, "alice")
    assert can(rbac, ALICE, verb, resource, **kwargs) is allowed
    # A RoleBinding grants nothing outside its namespace.
    assert not can(rbac, ALICE, verb, resource, namespace="elsewhere", **kwargs)


SCHEDULER = UserInfo("system:kube-scheduler", (AUTHENTICATED,))


@pytest.mark.parametrize(("verb", "resource", "kwargs", "allowed"), [
    ("create", "pods", {"sub": "binding"}, True),
    ("patch", "pods", {"sub": "status"}, True),
    ("list", "pods", {"namespace": ""}, True),
    ("watch", "nodes", {"namespace": ""}, True),
    ("create", "events", {}, True),
    ("create", "events", {"group": "events.k8s.io"}, True),
    ("update", "leases", {"group": "coordination.k8s.io", "namespace": "kube-system",
                          "name": "kube-scheduler"}, True),
    ("update", "leases", {"group": "coordination.k8s.io", "namespace": "kube-system",
                          "name": "kube-controller-manager"}, False),
    ("delete", "nodes", {"namespace": ""}, False),
    ("get", "secrets", {}, False),
    ("create", "pods", {}, False),
])
def test_the_scheduler(verb, resource, kwargs, allowed):
    namespace = kwargs.pop("namespace", "shop")
    assert can(policy_authorizer(), SCHEDULER, verb, resource, namespace=namespace,
               **kwargs) is allowed


CONTROLLER_MANAGER = UserInfo("system:kube-controller-manager", (AUTHENTICATED,))

# What keelson's controllers call today (grep "client\." in controllers/), and the
# informers they start (list + watch).
CONTROLLER_CALLS = [
    ("create", "apps", "replicasets", ""), ("get", "apps", "replicasets", ""),
    ("patch", "apps", "replicasets", ""), ("delete", "apps", "replicasets", ""),
    ("patch", "apps", "replicasets", "status"), ("patch", "apps", "deployments", ""),
    ("patch", "apps", "deployments", "status"), ("create", "", "pods", ""),
    ("delete", "", "pods", ""), ("patch", "", "pods", "status"),
    ("create", "", "endpoints", ""), ("update", "", "endpoints", ""),
    ("delete", "", "endpoints", ""), ("create", "discovery.k8s.io", "endpointslices", ""),
    ("update", "discovery.k8s.io", "endpointslices", ""),
    ("delete", "discovery.k8s.io", "endpointslices", ""),
    ("get", "", "nodes", ""), ("update", "", "nodes", ""), ("patch", "", "nodes", "status"),
    ("patch", "", "configmaps", ""), ("delete", "coordination.k8s.io", "leases", ""),
    ("delete", "", "services", ""), ("create", "", "events", ""),
    ("list", "", "pods", ""), ("watch", "coordination.k8s.io", "leases", ""),
    ("watch", "", "services", ""),
    # Being added with issues #11/#12.
    ("create", "", "serviceaccounts", ""), ("create", "", "serviceaccounts", "token"),
    ("create", "", "secrets", ""), ("delete", "", "namespaces", ""),
    ("update", "", "namespaces", "finalize"), ("deletecollection", "", "configmaps", ""),
    ("create", "apps", "controllerrevisions", ""), ("update", "apps", "daemonsets", "status"),
    ("create", "batch", "jobs", ""), ("update", "batch", "cronjobs", "status"),
    ("update", "certificates.k8s.io", "certificatesigningrequests", "approval"),
    ("update", "certificates.k8s.io", "certificatesigningrequests", "status"),
]


@pytest.mark.parametrize(("verb", "group", "resource", "sub"), CONTROLLER_CALLS)
def test_the_controller_manager_may_do_what_our_controllers_do(verb, group, resource, sub):
    assert can(policy_authorizer(), CONTROLLER_MANAGER, verb, resource, group=group, sub=sub)


def test_the_controller_manager_signs_and_approves_only_kube_signers():
    rbac = policy_authorizer()
    signer = "kubernetes.io/kube-apiserver-client-kubelet"
    assert can(rbac, CONTROLLER_MANAGER, "approve", "signers", group="certificates.k8s.io",
               namespace="", name=signer)
    assert can(rbac, CONTROLLER_MANAGER, "sign", "signers", group="certificates.k8s.io",
               namespace="", name="kubernetes.io/kubelet-serving")
    assert not can(rbac, CONTROLLER_MANAGER, "approve", "signers",
                   group="certificates.k8s.io", namespace="", name="example.com/other")
    assert not can(rbac, CONTROLLER_MANAGER, "create", "clusterrolebindings", group=RBAC_GROUP,
                   namespace="")
    assert not can(rbac, CONTROLLER_MANAGER, "create", "pods", sub="exec")
    assert set(CONTROLLER_MANAGER_NEEDS) >= {"deployment", "replicaset", "endpoints",
                                             "endpointslice", "nodelifecycle", "nodeipam",
                                             "garbagecollector"}


KUBE_PROXY = UserInfo("system:kube-proxy", (AUTHENTICATED,))


def test_kube_proxy():
    rbac = policy_authorizer()
    for verb, group, resource in (("list", "", "services"), ("watch", "", "endpoints"),
                                  ("watch", "discovery.k8s.io", "endpointslices"),
                                  ("get", "", "nodes"), ("create", "", "events"),
                                  ("patch", "", "events")):
        assert can(rbac, KUBE_PROXY, verb, resource, group=group, namespace=""), resource
    assert not can(rbac, KUBE_PROXY, "get", "secrets")
    assert not can(rbac, KUBE_PROXY, "update", "services")


def test_nodes_get_nothing_from_rbac_by_default():
    node = UserInfo("system:node:n1", ("system:nodes", AUTHENTICATED))
    rbac = policy_authorizer()
    assert not can(rbac, node, "get", "secrets")
    assert not can(rbac, node, "create", "pods")
    assert by_name(cluster_roles())["system:node"]["rules"]  # the role exists, unbound


def test_rules_for_lists_what_a_new_user_may_do():
    result = policy_authorizer().rules_for(ALICE, "shop")
    assert {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]} in \
        result.resource_rules
    assert any("/api/*" in rule["nonResourceURLs"] for rule in result.non_resource_rules)
    assert result.evaluation_error == ""


# --- reconcile --------------------------------------------------------------------------------

def stored(obj):
    """What the store holds after writing ``obj`` (metadata grows server fields)."""
    obj = copy.deepcopy(obj)
    obj["metadata"].update(uid="u1", resourceVersion="7")
    return obj


def test_reconcile_creates_what_is_missing():
    wanted = by_name(cluster_roles())["view"]
    assert reconcile(None, wanted) == wanted
    assert reconcile_result(None, wanted).operation == "create"


def test_reconcile_leaves_an_up_to_date_object():
    for wanted in bootstrap_objects():
        assert reconcile(stored(wanted), wanted) is None, wanted["metadata"]["name"]


def test_reconcile_adds_missing_rules_and_keeps_the_users():
    wanted = by_name(cluster_roles())["system:node-proxier"]
    existing = stored(wanted)
    user_rule = {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}
    existing["rules"] = [existing["rules"][0], user_rule]
    existing["metadata"]["labels"]["team"] = "net"
    result = reconcile(existing, wanted)
    assert result["rules"][:2] == [wanted["rules"][0], user_rule]
    missing = result["rules"][2:]
    assert {"verbs": ["get"], "apiGroups": [""], "resources": ["nodes"]} in missing
    assert {"verbs": ["watch"], "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"]} in missing
    assert result["metadata"]["labels"] == {"kubernetes.io/bootstrapping": "rbac-defaults",
                                            "team": "net"}
    assert result["metadata"]["resourceVersion"] == "7"
    assert reconcile(result, wanted) is None


def test_reconcile_restores_labels_annotations_and_selectors():
    wanted = by_name(cluster_roles())["admin"]
    existing = stored(wanted)
    del existing["metadata"]["labels"]
    existing["metadata"]["annotations"] = {"note": "mine"}
    existing["aggregationRule"]["clusterRoleSelectors"] = [{"matchLabels": {"extra": "true"}}]
    existing["rules"] = [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]
    result = reconcile(existing, wanted)
    assert result["metadata"]["labels"] == {"kubernetes.io/bootstrapping": "rbac-defaults"}
    assert result["metadata"]["annotations"] == {"note": "mine", AUTOUPDATE_ANNOTATION: "true"}
    assert result["aggregationRule"]["clusterRoleSelectors"] == [
        {"matchLabels": {"extra": "true"}},
        {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]
    assert result["rules"] == existing["rules"]


def test_reconcile_leaves_protected_objects_alone():
    wanted = by_name(cluster_roles())["edit"]
    existing = stored(wanted)
    existing["metadata"]["annotations"][AUTOUPDATE_ANNOTATION] = "false"
    existing["aggregationRule"] = None
    assert reconcile(existing, wanted) is None
    result = reconcile_result(existing, wanted)
    assert (result.operation, result.protected) == ("update", True)


def test_reconcile_bindings_add_subjects_and_recreate_on_role_ref_change():
    wanted = by_name(cluster_role_bindings())["system:discovery"]
    existing = stored(wanted)
    mine = {"kind": "User", "apiGroup": RBAC_GROUP, "name": "carol"}
    existing["subjects"] = [mine]
    result = reconcile(existing, wanted)
    assert result["subjects"] == [mine, *wanted["subjects"]]
    assert reconcile(result, wanted) is None

    moved = stored(wanted)
    moved["roleRef"]["name"] = "cluster-admin"
    recreated = reconcile_result(moved, wanted)
    assert recreated.operation == "recreate"
    assert recreated.obj == wanted

    unbound = by_name(cluster_role_bindings())["system:node"]
    with_subject = stored(unbound)
    with_subject["subjects"] = [{"kind": "Group", "apiGroup": RBAC_GROUP,
                                 "name": "system:nodes"}]
    assert reconcile(with_subject, unbound) is None  # union mode never removes subjects
