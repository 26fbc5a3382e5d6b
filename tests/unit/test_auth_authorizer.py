"""The authorization core: the union of authorizers and kube-apiserver's 403 texts."""

from __future__ import annotations

import pytest

from apiserver.auth.authn import UserInfo
from apiserver.auth.authorizer import (
    AlwaysAllowAuthorizer,
    AlwaysDenyAuthorizer,
    Attributes,
    Decision,
    PrivilegedGroupAuthorizer,
    UnionAuthorizer,
    aggregate_error_text,
    forbidden_details,
    forbidden_message,
    forbidden_status,
    forbidden_status_message,
    go_quote,
    go_quote_list,
)

ALICE = UserInfo("alice", ("system:authenticated",))


def attrs(**kwargs) -> Attributes:
    return Attributes(user=kwargs.pop("user", ALICE), **kwargs)


# --- forbidden messages -------------------------------------------------------------------

@pytest.mark.parametrize(("request_attrs", "reason", "expected"), [
    (attrs(verb="create", resource="pods", namespace="shop"), "",
     'pods is forbidden: User "alice" cannot create resource "pods" in API group "" '
     'in the namespace "shop"'),
    (attrs(verb="get", resource="pods", namespace="shop", name="web"), "",
     'pods "web" is forbidden: User "alice" cannot get resource "pods" in API group "" '
     'in the namespace "shop"'),
    (attrs(verb="list", resource="nodes"), "",
     'nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" '
     'at the cluster scope'),
    (attrs(verb="create", resource="pods", subresource="exec", namespace="shop", name="web"),
     "",
     'pods "web" is forbidden: User "alice" cannot create resource "pods/exec" in API group '
     '"" in the namespace "shop"'),
    (attrs(verb="list", api_group="apps", resource="deployments", namespace="shop"), "",
     'deployments.apps is forbidden: User "alice" cannot list resource "deployments" in API '
     'group "apps" in the namespace "shop"'),
    (attrs(verb="get", resource_request=False, path="/metrics"), "",
     'forbidden: User "alice" cannot get path "/metrics"'),
    (attrs(verb="get", resource="secrets", namespace="shop", name="db"),
     'RBAC: clusterrole.rbac.authorization.k8s.io "reader" not found',
     'secrets "db" is forbidden: User "alice" cannot get resource "secrets" in API group "" '
     'in the namespace "shop": RBAC: clusterrole.rbac.authorization.k8s.io "reader" not found'),
    (attrs(verb="get", resource_request=False, path="/<script>"), "",
     'forbidden: User "alice" cannot get path "/&lt;script&gt;"'),
    (attrs(user=UserInfo('a"b', ()), verb="get", resource="pods", namespace="x"), "",
     'pods is forbidden: User "a\\"b" cannot get resource "pods" in API group "" '
     'in the namespace "x"'),
])
def test_forbidden_message_is_kube_apiservers(request_attrs, reason, expected):
    assert forbidden_message(request_attrs, reason) == expected


def test_the_reason_is_appended_unsanitized():
    message = forbidden_message(attrs(verb="get", resource_request=False, path="/x"), "a<b")
    assert message == 'forbidden: User "alice" cannot get path "/x": a<b'


@pytest.mark.parametrize(("request_attrs", "details"), [
    (attrs(verb="get", resource="pods", namespace="shop", name="web"),
     {"name": "web", "kind": "pods"}),
    (attrs(verb="list", api_group="apps", resource="deployments", subresource="scale",
           namespace="shop"), {"group": "apps", "kind": "deployments"}),
    (attrs(verb="get", resource_request=False, path="/metrics"), {}),
])
def test_forbidden_details_are_name_group_and_plural_kind(request_attrs, details):
    assert forbidden_details(request_attrs) == details
    assert list(forbidden_details(request_attrs)) == list(details)


def test_forbidden_status_is_the_whole_object_in_kube_order():
    status = forbidden_status(attrs(verb="get", resource="pod", name="mypod"))
    assert status == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pod "mypod" is forbidden: User "alice" cannot get resource "pod" in API '
                   'group "" at the cluster scope',
        "reason": "Forbidden", "details": {"name": "mypod", "kind": "pod"}, "code": 403}
    assert list(status) == ["kind", "apiVersion", "metadata", "status", "message", "reason",
                            "details", "code"]


def test_new_forbidden_message_forms():
    assert forbidden_status_message("", "", "", "boom") == "forbidden: boom"
    assert forbidden_status_message("rbac.authorization.k8s.io", "roles", "r", "boom") == \
        'roles.rbac.authorization.k8s.io "r" is forbidden: boom'
    assert forbidden_status_message("", "pods", "", "boom") == "pods is forbidden: boom"


# --- Go formatting ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "quoted"), [
    ("", '""'), ("plain", '"plain"'), ('a"b', '"a\\"b"'), ("a\\b", '"a\\\\b"'),
    ("line\nbreak", '"line\\nbreak"'), ("\x01", '"\\x01"'), ("héllo", '"héllo"'),
    ("\u200b", '"\\u200b"'),
])
def test_go_quote(text, quoted):
    assert go_quote(text) == quoted


def test_go_quote_list_and_aggregate():
    assert go_quote_list(["a", "b"]) == '["a" "b"]'
    assert go_quote_list([]) == "[]"
    assert aggregate_error_text(["one"]) == "one"
    assert aggregate_error_text(["one", "two", "one"]) == "[one, two]"
    assert aggregate_error_text(["same", "same"]) == "same"


# --- the chain ----------------------------------------------------------------------------

class Fixed:
    def __init__(self, decision, reason: str = "") -> None:
        self.decision, self.reason, self.calls = decision, reason, 0

    def authorize(self, attributes):
        self.calls += 1
        return self.decision, self.reason


def test_union_first_allow_wins_and_later_ones_are_not_asked():
    later = Fixed(Decision.DENY, "no")
    union = UnionAuthorizer(Fixed(Decision.NO_OPINION, "first"),
                            Fixed(Decision.ALLOW, "yes"), later)
    assert union.authorize(attrs(verb="get", resource="pods")) == (Decision.ALLOW, "yes")
    assert later.calls == 0


def test_union_deny_wins_with_its_own_reason():
    union = UnionAuthorizer(Fixed(Decision.NO_OPINION, "first"), Fixed(Decision.DENY, "no"),
                            Fixed(Decision.ALLOW))
    assert union.authorize(attrs(verb="get", resource="pods")) == (Decision.DENY, "no")


def test_union_without_opinion_joins_reasons_with_newlines():
    union = UnionAuthorizer(Fixed(Decision.NO_OPINION, "node says no"),
                            Fixed(Decision.NO_OPINION, ""),
                            Fixed(Decision.NO_OPINION, "RBAC: x"))
    assert union.authorize(attrs(verb="get", resource="pods")) == \
        (Decision.NO_OPINION, "node says no\nRBAC: x")
    assert UnionAuthorizer().authorize(attrs(verb="get", resource="pods")) == \
        (Decision.NO_OPINION, "")


def test_privileged_group_and_always_authorizers():
    masters = PrivilegedGroupAuthorizer("system:masters")
    root = UserInfo("root", ("system:masters",))
    assert masters.authorize(attrs(user=root, verb="delete", resource="nodes")) == \
        (Decision.ALLOW, "")
    assert masters.authorize(attrs(verb="delete", resource="nodes")) == \
        (Decision.NO_OPINION, "")
    assert AlwaysAllowAuthorizer().authorize(attrs(verb="x")) == (Decision.ALLOW, "")
    assert AlwaysDenyAuthorizer().authorize(attrs(verb="x")) == \
        (Decision.NO_OPINION, "Everything is forbidden.")
