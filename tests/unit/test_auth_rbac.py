"""RBAC: rule matching, subjects, scoping, the index, rules_for, escalation, validation,
aggregation — with kube's texts."""

from __future__ import annotations

import copy

import pytest

from apiclient.rbac import aggregate_all, aggregate_rules, aggregation_update
from apiserver.auth.authn import UserInfo
from apiserver.auth.authorizer import Attributes, Decision, forbidden_message
from apiserver.auth.rbac import (
    FULL_AUTHORITY,
    RBAC_GROUP,
    RBACAuthorizer,
    RbacIndex,
    RoleRefError,
    bind_attributes,
    breakdown_rule,
    check_binding_write,
    check_role_write,
    compact_rules,
    compact_string,
    covers,
    default_binding,
    escalate_attributes,
    escalation_allowed,
    escalation_forbidden,
    escalation_message,
    has_aggregation_rule,
    rule_allows,
    service_account_username,
    subject_applies,
    validate_cluster_role,
    validate_cluster_role_binding,
    validate_role,
    validate_role_binding,
)

ALICE = UserInfo("alice", ("devs", "system:authenticated"))
BOB = UserInfo("bob", ("system:authenticated",))


def user_attrs(user: UserInfo = ALICE, **kwargs) -> Attributes:
    return Attributes(user=user, **kwargs)


def meta(name: str, namespace: str = "", **extra) -> dict:
    out = {"name": name, **extra}
    if namespace:
        out["namespace"] = namespace
    return out


def role(name: str, namespace: str, rules: list) -> dict:
    return {"kind": "Role", "metadata": meta(name, namespace), "rules": rules}


def cluster_role(name: str, rules: list, labels: dict | None = None, **extra) -> dict:
    return {"kind": "ClusterRole", "metadata": meta(name, labels=labels or {}), "rules": rules,
            **extra}


def subject(kind: str, name: str, namespace: str = "") -> dict:
    out = {"kind": kind, "name": name}
    if kind in ("User", "Group"):
        out["apiGroup"] = RBAC_GROUP
    if namespace:
        out["namespace"] = namespace
    return out


def role_binding(name: str, namespace: str, ref_kind: str, ref_name: str, *subjects) -> dict:
    return {"kind": "RoleBinding", "metadata": meta(name, namespace),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": ref_kind, "name": ref_name},
            "subjects": list(subjects)}


def cluster_binding(name: str, ref_name: str, *subjects) -> dict:
    return {"kind": "ClusterRoleBinding", "metadata": meta(name),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": ref_name},
            "subjects": list(subjects)}


def rbac_with(*objs) -> RBACAuthorizer:
    index = RbacIndex()
    for obj in objs:
        index.upsert(obj)
    return RBACAuthorizer(index)


# --- rule matching ----------------------------------------------------------------------------

POD_READ = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}


@pytest.mark.parametrize(("rule", "request_kwargs", "allowed"), [
    # verbs
    (POD_READ, dict(verb="get", resource="pods"), True),
    (POD_READ, dict(verb="delete", resource="pods"), False),
    ({**POD_READ, "verbs": ["*"]}, dict(verb="delete", resource="pods"), True),
    ({**POD_READ, "verbs": ["frobnicate"]}, dict(verb="frobnicate", resource="pods"), True),
    # API groups
    (POD_READ, dict(verb="get", api_group="apps", resource="pods"), False),
    ({**POD_READ, "apiGroups": ["*"]}, dict(verb="get", api_group="apps", resource="pods"),
     True),
    ({**POD_READ, "apiGroups": []}, dict(verb="get", resource="pods"), False),
    # resources and subresources
    ({**POD_READ, "resources": ["*"]}, dict(verb="get", resource="secrets"), True),
    ({**POD_READ, "resources": ["*"]}, dict(verb="get", resource="pods", subresource="log"),
     True),
    (POD_READ, dict(verb="get", resource="pods", subresource="log"), False),
    ({**POD_READ, "resources": ["pods/log"]}, dict(verb="get", resource="pods",
                                                   subresource="log"), True),
    ({**POD_READ, "resources": ["pods/log"]}, dict(verb="get", resource="pods"), False),
    ({**POD_READ, "resources": ["*/status"]}, dict(verb="get", resource="nodes",
                                                   subresource="status"), True),
    ({**POD_READ, "resources": ["*/status"]}, dict(verb="get", resource="nodes"), False),
    ({**POD_READ, "resources": ["*/status"]}, dict(verb="get", resource="pods",
                                                   subresource="log"), False),
    # "pods/*" is not a wildcard in Kubernetes: it matches only a subresource named "*".
    ({**POD_READ, "resources": ["pods/*"]}, dict(verb="get", resource="pods",
                                                 subresource="log"), False),
    ({**POD_READ, "resources": ["pods/*"]}, dict(verb="get", resource="pods"), False),
    # resourceNames restrict only when present
    ({**POD_READ, "resourceNames": ["web"]}, dict(verb="get", resource="pods", name="web"),
     True),
    ({**POD_READ, "resourceNames": ["web"]}, dict(verb="get", resource="pods", name="db"),
     False),
    ({**POD_READ, "resourceNames": ["web"]}, dict(verb="list", resource="pods"), False),
    ({**POD_READ, "resourceNames": []}, dict(verb="get", resource="pods", name="db"), True),
    # non-resource URLs
    ({"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
     dict(verb="get", resource_request=False, path="/healthz"), True),
    ({"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
     dict(verb="get", resource_request=False, path="/healthz/etcd"), False),
    ({"verbs": ["get"], "nonResourceURLs": ["/apis/*"]},
     dict(verb="get", resource_request=False, path="/apis/apps/v1"), True),
    ({"verbs": ["get"], "nonResourceURLs": ["/apis/*"]},
     dict(verb="get", resource_request=False, path="/apis"), False),
    ({"verbs": ["get"], "nonResourceURLs": ["/api*"]},
     dict(verb="get", resource_request=False, path="/apis"), True),
    ({"verbs": ["*"], "nonResourceURLs": ["*"]},
     dict(verb="post", resource_request=False, path="/anything"), True),
    ({"verbs": ["get"], "nonResourceURLs": ["/metrics"]},
     dict(verb="post", resource_request=False, path="/metrics"), False),
    # a resource rule never matches a path, a URL rule never matches a resource
    (POD_READ, dict(verb="get", resource_request=False, path="/api"), False),
    ({"verbs": ["*"], "nonResourceURLs": ["*"]}, dict(verb="get", resource="pods"), False),
])
def test_rule_allows(rule, request_kwargs, allowed):
    assert rule_allows(user_attrs(**request_kwargs), rule) is allowed


# --- subjects ---------------------------------------------------------------------------------

SA = UserInfo("system:serviceaccount:shop:builder",
              ("system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"))


@pytest.mark.parametrize(("user", "subj", "binding_namespace", "applies"), [
    (ALICE, subject("User", "alice"), "", True),
    (ALICE, subject("User", "bob"), "", False),
    (ALICE, subject("Group", "devs"), "", True),
    (ALICE, subject("Group", "alice"), "", False),
    (SA, subject("ServiceAccount", "builder", "shop"), "", True),
    (SA, subject("ServiceAccount", "builder", "other"), "", False),
    (SA, subject("ServiceAccount", "builder"), "shop", True),   # RoleBinding default ns
    (SA, subject("ServiceAccount", "builder"), "other", False),
    (SA, subject("ServiceAccount", "builder"), "", False),      # ClusterRoleBinding: nobody
    (SA, subject("User", "system:serviceaccount:shop:builder"), "", True),
    (SA, subject("Group", "system:serviceaccounts:shop"), "", True),
    (ALICE, {"kind": "Robot", "name": "alice"}, "", False),
])
def test_subject_applies(user, subj, binding_namespace, applies):
    assert subject_applies(user, subj, binding_namespace) is applies


def test_service_account_username():
    assert service_account_username("kube-system", "kube-dns") == \
        "system:serviceaccount:kube-system:kube-dns"


# --- authorizing --------------------------------------------------------------------------------

def test_cluster_role_binding_allows_everywhere_with_kubes_reason():
    rbac = rbac_with(cluster_role("pod-reader", [POD_READ]),
                     cluster_binding("read-pods", "pod-reader", subject("Group", "devs")))
    for namespace in ("shop", "other", ""):
        assert rbac.authorize(user_attrs(verb="get", resource="pods", namespace=namespace)) == (
            Decision.ALLOW, 'RBAC: allowed by ClusterRoleBinding "read-pods" of ClusterRole '
                            '"pod-reader" to Group "devs"')
    assert rbac.authorize(user_attrs(BOB, verb="get", resource="pods")) == \
        (Decision.NO_OPINION, "")


def test_role_binding_to_cluster_role_applies_only_in_its_namespace():
    rbac = rbac_with(cluster_role("pod-reader", [POD_READ]),
                     role_binding("read", "shop", "ClusterRole", "pod-reader",
                                  subject("User", "alice")))
    assert rbac.authorize(user_attrs(verb="list", resource="pods", namespace="shop")) == (
        Decision.ALLOW, 'RBAC: allowed by RoleBinding "read/shop" of ClusterRole "pod-reader" '
                        'to User "alice"')
    assert rbac.authorize(user_attrs(verb="list", resource="pods", namespace="other"))[0] is \
        Decision.NO_OPINION
    assert rbac.authorize(user_attrs(verb="list", resource="pods"))[0] is Decision.NO_OPINION


def test_role_binding_to_role_reads_the_role_of_its_own_namespace():
    rbac = rbac_with(role("reader", "shop", [POD_READ]), role("reader", "other", []),
                     role_binding("read", "other", "Role", "reader", subject("User", "alice")),
                     role_binding("read", "shop", "Role", "reader", subject("User", "alice")))
    assert rbac.authorize(user_attrs(verb="get", resource="pods", namespace="shop"))[0] is \
        Decision.ALLOW
    assert rbac.authorize(user_attrs(verb="get", resource="pods", namespace="other"))[0] is \
        Decision.NO_OPINION


def test_service_account_subject_without_namespace_in_a_role_binding():
    rbac = rbac_with(role("builder", "shop", [POD_READ]),
                     role_binding("b", "shop", "Role", "builder",
                                  subject("ServiceAccount", "builder")))
    assert rbac.authorize(user_attrs(SA, verb="get", resource="pods", namespace="shop")) == (
        Decision.ALLOW, 'RBAC: allowed by RoleBinding "b/shop" of Role "builder" to '
                        'ServiceAccount "builder/shop"')


def test_the_reason_names_the_first_subject_that_applies():
    rbac = rbac_with(cluster_role("r", [POD_READ]),
                     cluster_binding("b", "r", subject("User", "carol"), subject("Group", "devs"),
                                     subject("User", "alice")))
    assert rbac.authorize(user_attrs(verb="get", resource="pods"))[1].endswith(
        'to Group "devs"')


def test_missing_roles_give_kubes_not_found_reason_but_other_rules_still_count():
    rbac = rbac_with(
        cluster_binding("a", "gone", subject("User", "alice")),
        role_binding("b", "shop", "Role", "gone-too", subject("User", "alice")),
        role_binding("c", "shop", "Robot", "x", subject("User", "alice")),
    )
    decision, reason = rbac.authorize(user_attrs(verb="get", resource="pods", namespace="shop"))
    assert decision is Decision.NO_OPINION
    assert reason == ('RBAC: [clusterrole.rbac.authorization.k8s.io "gone" not found, '
                      'role.rbac.authorization.k8s.io "gone-too" not found, '
                      'unsupported role reference kind: "Robot"]')
    attrs = user_attrs(verb="get", resource="pods", namespace="shop")
    assert forbidden_message(attrs, reason).startswith(
        'pods is forbidden: User "alice" cannot get resource "pods" in API group "" in the '
        'namespace "shop": RBAC: [')
    rbac.source.upsert(cluster_role("fine", [POD_READ]))
    rbac.source.upsert(cluster_binding("d", "fine", subject("User", "alice")))
    assert rbac.authorize(attrs)[0] is Decision.ALLOW


def test_one_missing_role_reason_has_no_brackets():
    rbac = rbac_with(cluster_binding("a", "gone", subject("User", "alice")))
    assert rbac.authorize(user_attrs(verb="get", resource="pods"))[1] == \
        'RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found'


def test_role_ref_error_carries_what_a_404_needs():
    rbac = rbac_with()
    with pytest.raises(RoleRefError) as caught:
        rbac.role_ref_rules({"kind": "ClusterRole", "name": "x"}, "")
    assert (caught.value.plural, caught.value.name) == ("clusterroles", "x")


def test_non_resource_requests():
    rbac = rbac_with(cluster_role("health", [{"verbs": ["get"], "nonResourceURLs": ["/healthz",
                                                                                   "/api/*"]}]),
                     cluster_binding("health", "health", subject("Group",
                                                                 "system:authenticated")))
    assert rbac.authorize(user_attrs(verb="get", resource_request=False,
                                     path="/api/v1"))[0] is Decision.ALLOW
    assert rbac.authorize(user_attrs(verb="get", resource_request=False,
                                     path="/metrics"))[0] is Decision.NO_OPINION


# --- the index is fed incrementally -----------------------------------------------------------

def test_index_follows_binding_updates_and_deletes():
    index = RbacIndex()
    rbac = RBACAuthorizer(index)
    index.upsert(cluster_role("r", [POD_READ]))
    binding = cluster_binding("b", "r", subject("User", "alice"))
    index.upsert(binding)
    read = user_attrs(verb="get", resource="pods")
    assert rbac.authorize(read)[0] is Decision.ALLOW

    moved = copy.deepcopy(binding)
    moved["subjects"] = [subject("User", "bob")]
    index.upsert(moved)
    assert rbac.authorize(read)[0] is Decision.NO_OPINION
    assert rbac.authorize(user_attrs(BOB, verb="get", resource="pods"))[0] is Decision.ALLOW

    index.delete(moved)
    assert rbac.authorize(user_attrs(BOB, verb="get", resource="pods"))[0] is \
        Decision.NO_OPINION
    assert index.cluster_role_bindings_for(BOB) == []
    index.delete(moved)  # deleting twice is harmless


def test_index_role_binding_updates_and_role_changes():
    index = RbacIndex()
    rbac = RBACAuthorizer(index)
    index.upsert(role("r", "shop", [POD_READ]))
    binding = role_binding("b", "shop", "Role", "r", subject("Group", "devs"))
    index.upsert(binding)
    read = user_attrs(verb="get", resource="pods", namespace="shop")
    assert rbac.authorize(read)[0] is Decision.ALLOW
    index.upsert(role("r", "shop", []))
    assert rbac.authorize(read)[0] is Decision.NO_OPINION
    index.delete(role("r", "shop", []))
    assert "not found" in rbac.authorize(read)[1]
    index.delete(binding)
    assert rbac.authorize(read) == (Decision.NO_OPINION, "")
    assert index.list_role_bindings("shop") == []


def test_index_takes_kind_from_the_caller_for_list_items():
    index = RbacIndex()
    item = {"metadata": meta("r"), "rules": [POD_READ]}
    index.upsert(item, kind="ClusterRole")
    assert index.get_cluster_role("r") is item
    with pytest.raises(ValueError, match="not an object without kind"):
        index.upsert(item)
    index.delete(item, kind="ClusterRole")
    assert index.get_cluster_role("r") is None


def test_index_replace_forgets_the_old_state():
    index = RbacIndex()
    index.upsert(cluster_binding("b", "r", subject("User", "alice")))
    index.replace([cluster_role("r", [POD_READ]),
                   cluster_binding("c", "r", subject("User", "bob"))])
    assert index.cluster_role_bindings_for(ALICE) == []
    assert [b["metadata"]["name"] for b in index.cluster_role_bindings_for(BOB)] == ["c"]
    assert [r["metadata"]["name"] for r in index.list_cluster_roles()] == ["r"]


class ListerSource:
    """kube-style listers only: the authorizer must filter every binding itself."""

    def __init__(self, *objs) -> None:
        self.index = RbacIndex()
        for obj in objs:
            self.index.upsert(obj)

    def get_role(self, namespace, name):
        return self.index.get_role(namespace, name)

    def get_cluster_role(self, name):
        return self.index.get_cluster_role(name)

    def list_role_bindings(self, namespace):
        return self.index.list_role_bindings(namespace)

    def list_cluster_role_bindings(self):
        return self.index.list_cluster_role_bindings()


def test_a_plain_lister_source_decides_the_same():
    objs = [cluster_role("pod-reader", [POD_READ]),
            role_binding("read", "shop", "ClusterRole", "pod-reader", subject("Group", "devs")),
            cluster_binding("x", "pod-reader", subject("User", "bob"))]
    indexed, listed = rbac_with(*objs), RBACAuthorizer(ListerSource(*objs))
    for user in (ALICE, BOB, SA):
        for namespace in ("shop", "other", ""):
            request = user_attrs(user, verb="get", resource="pods", namespace=namespace)
            assert indexed.authorize(request) == listed.authorize(request)


class CountingIndex(RbacIndex):
    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def get_role(self, namespace, name):
        self._count("get_role")
        return super().get_role(namespace, name)

    def get_cluster_role(self, name):
        self._count("get_cluster_role")
        return super().get_cluster_role(name)

    def list_role_bindings(self, namespace):
        self._count("list_role_bindings")
        return super().list_role_bindings(namespace)

    def list_cluster_role_bindings(self):
        self._count("list_cluster_role_bindings")
        return super().list_cluster_role_bindings()


def test_a_thousand_roles_and_bindings_are_not_scanned():
    index = CountingIndex()
    for i in range(1000):
        namespace = f"ns{i % 10}"
        index.upsert(role(f"role{i}", namespace, [POD_READ]))
        index.upsert(role_binding(f"binding{i}", namespace, "Role", f"role{i}",
                                  subject("User", f"user{i}"),
                                  subject("ServiceAccount", f"sa{i}")))
    user = UserInfo("user537", ("system:authenticated",))
    assert RBACAuthorizer(index).authorize(
        user_attrs(user, verb="get", resource="pods", namespace="ns7")) == (
        Decision.ALLOW, 'RBAC: allowed by RoleBinding "binding537/ns7" of Role "role537" to '
                        'User "user537"')
    assert index.calls == {"get_role": 1}
    index.calls.clear()
    service_account = UserInfo("system:serviceaccount:ns3:sa43", ())
    assert RBACAuthorizer(index).authorize(
        user_attrs(service_account, verb="get", resource="pods", namespace="ns3"))[0] is \
        Decision.ALLOW
    assert RBACAuthorizer(index).authorize(
        user_attrs(UserInfo("nobody", ("system:authenticated",)), verb="get", resource="pods",
                   namespace="ns3"))[0] is Decision.NO_OPINION
    assert index.calls == {"get_role": 1}


# --- rules_for (SelfSubjectRulesReview) --------------------------------------------------------

def test_rules_for_lists_cluster_rules_then_namespace_rules():
    rbac = rbac_with(
        cluster_role("basic", [{"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
                                "resources": ["selfsubjectaccessreviews"]},
                               {"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*"]}]),
        cluster_binding("basic", "basic", subject("Group", "system:authenticated")),
        role("web", "shop", [{**POD_READ, "resourceNames": ["web"]}]),
        role_binding("web", "shop", "Role", "web", subject("User", "alice")),
        role_binding("broken", "shop", "ClusterRole", "gone", subject("User", "alice")),
    )
    result = rbac.rules_for(ALICE, "shop")
    assert result.resource_rules == [
        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
         "resources": ["selfsubjectaccessreviews"]},
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"],
         "resourceNames": ["web"]},
    ]
    assert result.non_resource_rules == [{"verbs": ["get"], "nonResourceURLs": ["/api",
                                                                              "/api/*"]}]
    assert result.incomplete is False
    assert result.evaluation_error == 'clusterrole.rbac.authorization.k8s.io "gone" not found'
    assert rbac.rules_for(ALICE, "other").resource_rules == result.resource_rules[:1]
    resource_rules, non_resource_rules, incomplete, error = rbac.rules_for(BOB, "")
    assert (len(resource_rules), len(non_resource_rules), incomplete, error) == (1, 1, False, "")


# --- escalation ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("owner", "requested", "uncovered"), [
    ([POD_READ], [POD_READ], []),
    ([POD_READ], [{**POD_READ, "verbs": ["get", "delete"]}],
     [{"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]),
    ([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
     [{"verbs": ["escalate"], "apiGroups": ["rbac.authorization.k8s.io"],
       "resources": ["roles/x"]}], []),
    ([{"verbs": ["get"], "apiGroups": [""], "resources": ["*/status"]}],
     [{"verbs": ["get"], "apiGroups": [""], "resources": ["nodes/status", "nodes"]}],
     [{"verbs": ["get"], "apiGroups": [""], "resources": ["nodes"]}]),
    ([{**POD_READ, "resourceNames": ["web"]}], [{**POD_READ, "verbs": ["get"],
                                                 "resourceNames": ["web"]}], []),
    ([{**POD_READ, "resourceNames": ["web"]}], [{**POD_READ, "verbs": ["get"]}],
     [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]),
    ([POD_READ], [{**POD_READ, "verbs": ["get"], "resourceNames": ["a", "b"]}], []),
    ([{"verbs": ["get"], "nonResourceURLs": ["/apis/*"]}],
     [{"verbs": ["get"], "nonResourceURLs": ["/apis/apps", "/metrics"]}],
     [{"verbs": ["get"], "nonResourceURLs": ["/metrics"]}]),
    (list(FULL_AUTHORITY), [{"verbs": ["get"], "nonResourceURLs": ["/x"]}, POD_READ], []),
])
def test_covers(owner, requested, uncovered):
    assert covers(owner, requested) == (not uncovered, uncovered)


def test_breakdown_and_compact():
    rule = {"verbs": ["get", "list"], "apiGroups": ["", "apps"], "resources": ["pods"],
            "resourceNames": ["a"]}
    assert breakdown_rule(rule) == [
        {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]},
        {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]},
        {"verbs": ["get"], "apiGroups": ["apps"], "resources": ["pods"], "resourceNames": ["a"]},
        {"verbs": ["list"], "apiGroups": ["apps"], "resources": ["pods"],
         "resourceNames": ["a"]},
    ]
    assert compact_rules(breakdown_rule(rule)) == [
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"],
         "resourceNames": ["a"]},
        {"verbs": ["get", "list"], "apiGroups": ["apps"], "resources": ["pods"],
         "resourceNames": ["a"]},
    ]
    assert compact_string({"verbs": ["create", "get"], "apiGroups": [""], "resources": ["pods"],
                           "resourceNames": ["web"]}) == \
        '{APIGroups:[""], Resources:["pods"], ResourceNames:["web"], Verbs:["create" "get"]}'
    assert compact_string({"verbs": ["get"], "nonResourceURLs": ["/metrics"]}) == \
        '{NonResourceURLs:["/metrics"], Verbs:["get"]}'


def test_escalation_message_is_kubes():
    missing = breakdown_rule({"verbs": ["create", "delete"], "apiGroups": [""],
                              "resources": ["pods", "secrets"]})
    assert escalation_message(ALICE, missing) == (
        'user "alice" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC '
        'permissions not currently held:\n'
        '{APIGroups:[""], Resources:["pods"], Verbs:["create" "delete"]}\n'
        '{APIGroups:[""], Resources:["secrets"], Verbs:["create" "delete"]}')
    assert escalation_message(UserInfo("x", ()), missing[:1], resolution_errors=["e1", "e2"]) \
        .endswith('Verbs:["create"]}; resolution errors: [[e1, e2]]')


def test_confirm_no_escalation_against_what_the_user_holds():
    rbac = rbac_with(cluster_role("pod-reader", [POD_READ]),
                     role_binding("b", "shop", "ClusterRole", "pod-reader",
                                  subject("User", "alice")))
    assert rbac.confirm_no_escalation(ALICE, "shop", [{**POD_READ, "verbs": ["get"]}]) is None
    message = rbac.confirm_no_escalation(ALICE, "other", [{**POD_READ, "verbs": ["get"]}])
    assert message == ('user "alice" (groups=["devs" "system:authenticated"]) is attempting '
                       'to grant RBAC permissions not currently held:\n'
                       '{APIGroups:[""], Resources:["pods"], Verbs:["get"]}')
    assert escalation_forbidden("roles", "reader", message).startswith(
        'roles.rbac.authorization.k8s.io "reader" is forbidden: user "alice" (groups=')


def test_escalation_helpers():
    assert escalation_allowed(UserInfo("root", ("system:masters",)))
    assert not escalation_allowed(ALICE)
    bind = bind_attributes(ALICE, {"apiGroup": RBAC_GROUP, "kind": "ClusterRole",
                                   "name": "admin"}, "shop")
    assert (bind.verb, bind.api_group, bind.resource, bind.name, bind.namespace) == \
        ("bind", RBAC_GROUP, "clusterroles", "admin", "shop")
    assert bind_attributes(ALICE, {"kind": "Robot", "name": "x"}, "shop") is None
    escalate = escalate_attributes(ALICE, resource="roles", name="r", namespace="shop")
    assert (escalate.verb, escalate.api_version, escalate.resource) == \
        ("escalate", "*", "roles")
    assert has_aggregation_rule({"aggregationRule": {"clusterRoleSelectors": [{}]}})
    assert not has_aggregation_rule({"aggregationRule": {"clusterRoleSelectors": []}})
    assert not has_aggregation_rule(None)


def guard_setup():
    rbac = rbac_with(
        cluster_role("pod-reader", [POD_READ]),
        cluster_role("secret-admin", [{"verbs": ["*"], "apiGroups": [""],
                                       "resources": ["secrets"]}]),
        cluster_role("binder", [{"verbs": ["bind"], "apiGroups": [RBAC_GROUP],
                                 "resources": ["clusterroles"],
                                 "resourceNames": ["secret-admin"]}]),
        cluster_role("escalator", [{"verbs": ["escalate"], "apiGroups": [RBAC_GROUP],
                                    "resources": ["roles"]}]),
        role_binding("read", "shop", "ClusterRole", "pod-reader", subject("User", "alice")),
        role_binding("bind", "shop", "ClusterRole", "binder", subject("User", "alice")),
        role_binding("esc", "lab", "ClusterRole", "escalator", subject("User", "alice")),
    )
    return rbac


def test_check_role_write():
    rbac = guard_setup()
    reading = [{**POD_READ, "verbs": ["get"]}]
    secrets = [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]
    assert check_role_write(rbac, rbac, ALICE, resource="roles", namespace="shop", name="r",
                            rules=reading) is None
    assert check_role_write(rbac, rbac, ALICE, resource="roles", namespace="shop", name="r",
                            rules=secrets) == (
        'roles.rbac.authorization.k8s.io "r" is forbidden: user "alice" (groups=["devs" '
        '"system:authenticated"]) is attempting to grant RBAC permissions not currently '
        'held:\n{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}')
    # "escalate" on roles in lab lets alice write any Role there.
    assert check_role_write(rbac, rbac, ALICE, resource="roles", namespace="lab", name="r",
                            rules=secrets) is None
    root = UserInfo("root", ("system:masters",))
    assert check_role_write(rbac, rbac, root, resource="clusterroles", namespace="",
                            name="c", rules=secrets, aggregated=True) is None
    assert check_role_write(rbac, rbac, ALICE, resource="roles", namespace="shop", name="r",
                            rules=[], aggregated=True) == (
        'roles.rbac.authorization.k8s.io "r" is forbidden: must have cluster-admin '
        'privileges to use the aggregationRule')


def test_check_binding_write():
    rbac = guard_setup()
    view_ref = {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "pod-reader"}
    secret_ref = {**view_ref, "name": "secret-admin"}
    assert check_binding_write(rbac, rbac, ALICE, resource="rolebindings", namespace="shop",
                               name="b", role_ref=view_ref) is None
    # "bind" on secret-admin lets alice bind it without holding its rules...
    assert check_binding_write(rbac, rbac, ALICE, resource="rolebindings", namespace="shop",
                               name="b", role_ref=secret_ref) is None
    # ...only where that permission is granted.
    assert check_binding_write(rbac, rbac, ALICE, resource="rolebindings", namespace="lab",
                               name="b", role_ref=secret_ref).startswith(
        'rolebindings.rbac.authorization.k8s.io "b" is forbidden: user "alice"')
    with pytest.raises(RoleRefError):
        check_binding_write(rbac, rbac, ALICE, resource="clusterrolebindings", namespace="",
                            name="b", role_ref={**view_ref, "name": "gone"})
    assert check_binding_write(rbac, rbac, UserInfo("root", ("system:masters",)),
                               resource="clusterrolebindings", namespace="", name="b",
                               role_ref={**view_ref, "name": "gone"}) is None


# --- defaulting and validation ------------------------------------------------------------------

def test_default_binding():
    obj = {"subjects": [{"kind": "User", "name": "a"}, {"kind": "ServiceAccount", "name": "s"},
                        {"kind": "Group", "name": "g", "apiGroup": "custom"}]}
    default_binding(obj)
    assert obj == {"roleRef": {"apiGroup": RBAC_GROUP},
                   "subjects": [{"kind": "User", "name": "a", "apiGroup": RBAC_GROUP},
                                {"kind": "ServiceAccount", "name": "s"},
                                {"kind": "Group", "name": "g", "apiGroup": "custom"}]}


def causes_of(causes):
    return [(c["field"], c["reason"], c["message"]) for c in causes]


@pytest.mark.parametrize(("rules", "expected"), [
    ([POD_READ], []),
    ([{"verbs": [], "apiGroups": [""], "resources": ["pods"]}],
     [("rules[0].verbs", "FieldValueRequired",
       "Required value: verbs must contain at least one value")]),
    ([{"verbs": ["get"]}],
     [("rules[0].apiGroups", "FieldValueRequired",
       "Required value: resource rules must supply at least one api group"),
      ("rules[0].resources", "FieldValueRequired",
       "Required value: resource rules must supply at least one resource")]),
    ([{"verbs": ["get"], "nonResourceURLs": ["/metrics"]}],
     [("rules[0].nonResourceURLs", "FieldValueInvalid",
       'Invalid value: []string{"/metrics"}: namespaced rules cannot apply to non-resource '
       'URLs')]),
    ([{"verbs": ["get"], "apiGroups": "", "resources": ["pods"]}],
     [("rules[0].apiGroups", "FieldValueTypeInvalid",
       'Invalid value: "": must be a list of strings')]),
    ([{"verbs": ["frobnicate"], "apiGroups": [""], "resources": ["pods"]}], []),
    (["get"], [("rules[0]", "FieldValueTypeInvalid", 'Invalid value: "get": must be an '
                                                     'object')]),
])
def test_validate_role_rules(rules, expected):
    assert causes_of(validate_role(role("r", "shop", rules))) == expected


def test_validate_cluster_role():
    both = {"verbs": ["get"], "apiGroups": [""], "nonResourceURLs": ["/x"]}
    assert causes_of(validate_cluster_role(cluster_role("c", [both]))) == [
        ("rules[0].nonResourceURLs", "FieldValueInvalid",
         'Invalid value: []string{"/x"}: rules cannot apply to both regular resources and '
         'non-resource URLs')]
    assert validate_cluster_role(cluster_role("c", [{"verbs": ["get"],
                                                     "nonResourceURLs": ["/x"]}])) == []
    assert causes_of(validate_cluster_role(cluster_role(
        "agg", [], aggregationRule={"clusterRoleSelectors": []}))) == [
        ("aggregationRule.clusterRoleSelectors", "FieldValueRequired",
         "Required value: at least one clusterRoleSelector required if aggregationRule is "
         "non-nil")]
    bad_selector = {"clusterRoleSelectors": [{"matchExpressions": [
        {"key": "a", "operator": "Near"}]}]}
    [cause] = validate_cluster_role(cluster_role("agg", [], aggregationRule=bad_selector))
    assert cause["field"] == "aggregationRule.clusterRoleSelectors[0]"
    assert "Near" in cause["message"]
    assert causes_of(validate_cluster_role(cluster_role("a/b", []))) == [
        ("metadata.name", "FieldValueInvalid", "Invalid value: \"a/b\": may not contain '/'")]
    assert validate_cluster_role(cluster_role("system:node", [])) == []


def defaulted(binding: dict) -> dict:
    binding = copy.deepcopy(binding)
    default_binding(binding)
    return binding


def test_validate_role_binding():
    good = role_binding("b", "shop", "ClusterRole", "view", subject("User", "alice"),
                        subject("ServiceAccount", "builder"))
    assert validate_role_binding(defaulted(good)) == []
    no_ref = {"kind": "RoleBinding", "metadata": meta("b", "shop")}
    assert causes_of(validate_role_binding(defaulted(no_ref))) == [
        ("roleRef.kind", "FieldValueNotSupported",
         'Unsupported value: "": supported values: "Role", "ClusterRole"'),
        ("roleRef.name", "FieldValueRequired", "Required value")]
    wrong = defaulted(role_binding("b", "shop", "Role", "r",
                                   {"kind": "Robot", "name": "r2"},
                                   {"kind": "ServiceAccount", "name": "Bad_Name",
                                    "apiGroup": "x"},
                                   {"kind": "User", "name": "", "apiGroup": "v1"}))
    wrong["roleRef"]["apiGroup"] = "rbac"
    assert causes_of(validate_role_binding(wrong)) == [
        ("roleRef.apiGroup", "FieldValueNotSupported",
         'Unsupported value: "rbac": supported values: "rbac.authorization.k8s.io"'),
        ("subjects[0].kind", "FieldValueNotSupported",
         'Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"'),
        ("subjects[1].name", "FieldValueInvalid",
         'Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case '
         "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
         "character (e.g. 'example.com', regex used for validation is "
         "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
        ("subjects[1].apiGroup", "FieldValueNotSupported",
         'Unsupported value: "x": supported values: ""'),
        ("subjects[2].name", "FieldValueRequired", "Required value"),
        ("subjects[2].apiGroup", "FieldValueNotSupported",
         'Unsupported value: "v1": supported values: "rbac.authorization.k8s.io"')]


def test_validate_role_binding_update_cannot_change_role_ref():
    old = defaulted(role_binding("b", "shop", "ClusterRole", "view", subject("User", "a")))
    new = copy.deepcopy(old)
    new["subjects"].append(subject("User", "b"))
    assert validate_role_binding(new, old) == []
    new["roleRef"]["name"] = "edit"
    assert causes_of(validate_role_binding(new, old)) == [
        ("roleRef", "FieldValueInvalid",
         'Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", '
         'Kind:"ClusterRole", Name:"edit"}: cannot change roleRef')]


def test_validate_cluster_role_binding():
    binding = defaulted(cluster_binding("b", "view", subject("ServiceAccount", "builder")))
    binding["roleRef"]["kind"] = "Role"
    assert causes_of(validate_cluster_role_binding(binding)) == [
        ("roleRef.kind", "FieldValueNotSupported",
         'Unsupported value: "Role": supported values: "ClusterRole"'),
        ("subjects[0].namespace", "FieldValueRequired", "Required value")]
    assert causes_of(validate_cluster_role_binding({
        "metadata": meta("b"), "roleRef": "view", "subjects": {"kind": "User"}})) == [
        ("roleRef", "FieldValueTypeInvalid", 'Invalid value: "view": must be an object'),
        ("subjects", "FieldValueTypeInvalid",
         "Invalid value: {'kind': 'User'}: must be a list of subjects")]


# --- aggregation ------------------------------------------------------------------------------

def test_aggregate_rules_unions_matching_roles_by_name_without_duplicates():
    aggregated = cluster_role("monitoring", [{"verbs": ["stale"]}], aggregationRule={
        "clusterRoleSelectors": [{"matchLabels": {"a": "true"}},
                                 {"matchExpressions": [{"key": "b", "operator": "Exists"}]}]})
    rule_x = {"verbs": ["get"], "apiGroups": [""], "resources": ["x"]}
    rule_y = {"verbs": ["get"], "apiGroups": [""], "resources": ["y"]}
    others = [
        cluster_role("zeta", [rule_y], {"a": "true"}),
        cluster_role("alpha", [rule_x, {**rule_y, "resourceNames": []}], {"a": "true"}),
        cluster_role("beta", [rule_x], {"b": "1"}),
        cluster_role("unrelated", [{"verbs": ["*"]}], {"a": "false"}),
        cluster_role("monitoring-self", [], {"a": "true"}),
    ]
    # itself is skipped even when its labels match
    aggregated["metadata"]["labels"] = {"a": "true"}
    assert aggregate_rules(aggregated, [aggregated, *others]) == [
        rule_x, {**rule_y, "resourceNames": []}]
    assert aggregation_update(aggregated, [aggregated, *others]) == [
        rule_x, {**rule_y, "resourceNames": []}]
    settled = {**aggregated, "rules": [rule_x, rule_y]}
    assert aggregation_update(settled, [settled, *others]) is None
    plain = cluster_role("plain", [rule_x])
    assert aggregate_rules(plain, others) == [rule_x]
    assert aggregation_update(plain, others) is None


def test_aggregate_all_settles_chains():
    view = cluster_role("view", [], {"edit": "true"},
                        aggregationRule={"clusterRoleSelectors": [{"matchLabels": {"view":
                                                                                   "true"}}]})
    edit = cluster_role("edit", [], {"admin": "true"},
                        aggregationRule={"clusterRoleSelectors": [{"matchLabels": {"edit":
                                                                                   "true"}}]})
    admin = cluster_role("admin", [],
                         aggregationRule={"clusterRoleSelectors": [{"matchLabels": {"admin":
                                                                                    "true"}}]})
    to_view = cluster_role("to-view", [POD_READ], {"view": "true"})
    result = aggregate_all([admin, edit, view, to_view])
    assert result == {"admin": [POD_READ], "edit": [POD_READ], "view": [POD_READ]}
