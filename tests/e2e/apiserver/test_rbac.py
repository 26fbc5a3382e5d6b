"""RBAC end to end: the real ``kubectl`` and the official client as ordinary users.

Users get client certificates from the test server's CA (``ApiServer.user_kubeconfig``)
and only the roles a test binds; what they see is what a kube-apiserver user sees: the
exact 403 texts and Status bytes, ``kubectl auth can-i [--list]``, ``auth whoami``,
impersonation, escalation prevention, ``resourceNames``, 422 causes for bad roles, and
the aggregated ``view`` role following a new ``aggregate-to-view`` ClusterRole.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.support.apiserver import ApiServer, running_apiserver, unique

RBAC = "rbac.authorization.k8s.io/v1"


def forbidden_body(message: str, details: str) -> str:
    """kube-apiserver's 403 body, byte for byte."""
    return ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
            f'"message":{json.dumps(message)},"reason":"Forbidden","details":{details},'
            '"code":403}\n')


def body_text(error: ApiException) -> str:
    return error.body.decode() if isinstance(error.body, bytes) else str(error.body)


def expect_api_error(code: int, call: Callable[[], Any]) -> ApiException:
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == code, info.value.body
    return info.value


def bind(server: ApiServer, namespace: str, role: str, user: str, *,
         kind: str = "ClusterRole") -> None:
    flag = "--clusterrole" if kind == "ClusterRole" else "--role"
    server.kubectl("create", "rolebinding", unique("rb"), "-n", namespace, f"{flag}={role}",
                   f"--user={user}")


@pytest.fixture
def user(apiserver: ApiServer) -> tuple[str, Path]:
    name = unique("alice")
    return name, apiserver.user_kubeconfig(name, ("dev",))


@pytest.fixture
def other_namespace(apiserver: ApiServer) -> Iterator[str]:
    name = unique()
    apiserver.kubectl("create", "namespace", name)
    yield name
    apiserver.kubectl("delete", "namespace", name, "--wait=false", check=False)


def api_for(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def test_view_in_one_namespace_lists_there_and_gets_kubes_403_elsewhere(
        apiserver: ApiServer, namespace: str, other_namespace: str,
        user: tuple[str, Path]) -> None:
    name, kubeconfig = user
    bind(apiserver, namespace, "view", name)
    apiserver.kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=a=b")

    listed = apiserver.kubectl("get", "configmaps", "-n", namespace, kubeconfig=kubeconfig)
    assert "settings" in listed.stdout
    elsewhere = apiserver.kubectl("get", "pods", "-n", other_namespace, kubeconfig=kubeconfig,
                                  check=False)
    assert elsewhere.returncode == 1
    assert elsewhere.stderr.strip() == (
        f'Error from server (Forbidden): pods is forbidden: User "{name}" cannot list '
        f'resource "pods" in API group "" in the namespace "{other_namespace}"')
    create = apiserver.kubectl("create", "configmap", "x", "-n", namespace,
                               "--from-literal=a=b", kubeconfig=kubeconfig, check=False)
    assert create.stderr.strip() == (
        f'error: failed to create configmap: configmaps is forbidden: User "{name}" cannot '
        f'create resource "configmaps" in API group "" in the namespace "{namespace}"')

    with api_for(kubeconfig) as api:
        core = client.CoreV1Api(api)
        names = [c.metadata.name for c in core.list_namespaced_config_map(namespace).items]
        assert "settings" in names
        for event in watch.Watch().stream(core.list_namespaced_config_map, namespace,
                                          timeout_seconds=1):
            assert event["type"] == "ADDED"
        error = expect_api_error(403, lambda: core.list_namespaced_pod(other_namespace))
        assert body_text(error) == forbidden_body(
            f'pods is forbidden: User "{name}" cannot list resource "pods" in API group "" '
            f'in the namespace "{other_namespace}"', '{"kind":"pods"}')
        error = expect_api_error(403, lambda: core.read_namespaced_secret("s", namespace))
        assert body_text(error) == forbidden_body(
            f'secrets "s" is forbidden: User "{name}" cannot get resource "secrets" in API '
            f'group "" in the namespace "{namespace}"', '{"name":"s","kind":"secrets"}')
        apps = client.AppsV1Api(api)
        error = expect_api_error(
            403, lambda: apps.delete_collection_namespaced_deployment(namespace))
        assert json.loads(body_text(error))["message"] == (
            f'deployments.apps is forbidden: User "{name}" cannot deletecollection resource '
            f'"deployments" in API group "apps" in the namespace "{namespace}"')


def test_non_resource_urls_need_rules_too(apiserver: ApiServer, user: tuple[str, Path]
                                          ) -> None:
    name, kubeconfig = user
    with api_for(kubeconfig) as api:
        host = api.configuration.host
        metrics = api.rest_client.request("GET", f"{host}/metrics")
        assert metrics.status == 403
        assert metrics.read().decode() == forbidden_body(
            f'forbidden: User "{name}" cannot get path "/metrics"', "{}")
        assert api.rest_client.request("GET", f"{host}/version").status == 200
    assert apiserver.kubectl("get", "--raw", "/healthz", kubeconfig=kubeconfig).stdout == "ok"
    code, _, body = apiserver.http("GET", "/api/v1/pods", authenticated=False)
    assert (code, body) == (401, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                  "status": "Failure", "message": "Unauthorized",
                                  "reason": "Unauthorized", "code": 401})


def test_can_i_can_i_list_and_whoami(apiserver: ApiServer, namespace: str,
                                     user: tuple[str, Path]) -> None:
    name, kubeconfig = user
    bind(apiserver, namespace, "view", name)

    def can_i(*args: str) -> str:
        result = apiserver.kubectl("auth", "can-i", *args, "-n", namespace,
                                   kubeconfig=kubeconfig, check=False)
        return result.stdout.strip()

    assert can_i("list", "pods") == "yes"
    assert can_i("watch", "deployments.apps") == "yes"
    assert can_i("get", "pods", "--subresource=log") == "yes"
    assert can_i("create", "pods") == "no"
    assert can_i("get", "secrets") == "no"
    assert can_i("get", "/healthz") == "yes"
    listed = apiserver.kubectl("auth", "can-i", "--list", "-n", namespace,
                               kubeconfig=kubeconfig).stdout
    rows = {line.split()[0]: line.split("[")[-1] for line in listed.splitlines()[1:] if line}
    assert rows["pods"] == "get list watch]"
    assert rows["selfsubjectaccessreviews.authorization.k8s.io"] == "create]"
    assert "secrets" not in rows
    assert listed.splitlines()[0].split() == ["Resources", "Non-Resource", "URLs", "Resource",
                                              "Names", "Verbs"]
    whoami = apiserver.kubectl("auth", "whoami", kubeconfig=kubeconfig).stdout.split("\n")
    assert whoami[1].split() == ["Username", name]
    assert whoami[2].split() == ["Groups", "[dev", "system:authenticated]"]


def test_access_reviews_with_the_official_client(apiserver: ApiServer, namespace: str,
                                                 k8s: client.ApiClient) -> None:
    name = unique("bob")
    bind(apiserver, namespace, "edit", name)
    authz = client.AuthorizationV1Api(k8s)
    attributes = client.V1ResourceAttributes(namespace=namespace, verb="create",
                                             resource="deployments", group="apps")
    review = authz.create_subject_access_review(client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(user=name, resource_attributes=attributes)))
    assert review.status.allowed
    assert review.status.reason.startswith("RBAC: allowed by RoleBinding")
    attributes.namespace = "default"
    local = authz.create_namespaced_local_subject_access_review("default",
                                                                client.V1LocalSubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(user=name, resource_attributes=attributes)))
    assert not local.status.allowed
    error = expect_api_error(422, lambda: authz.create_subject_access_review(
        client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=name))))
    assert json.loads(body_text(error))["details"]["causes"][0]["field"] == \
        "spec.resourceAttributes"
    mine = authz.create_self_subject_access_review(client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            non_resource_attributes=client.V1NonResourceAttributes(path="/api", verb="get"))))
    assert mine.status.allowed


def test_impersonation_is_authorized_by_the_impersonate_verb(
        apiserver: ApiServer, namespace: str, user: tuple[str, Path]) -> None:
    name, kubeconfig = user
    target = unique("bob")
    bind(apiserver, namespace, "view", target)
    as_target = apiserver.kubectl("get", "pods", "-n", namespace, f"--as={target}")
    assert as_target.returncode == 0
    refused = apiserver.kubectl("get", "pods", "-n", "default", f"--as={target}", check=False)
    assert f'User "{target}" cannot list resource "pods"' in refused.stderr

    denied = apiserver.kubectl("get", "pods", "-n", namespace, f"--as={target}",
                               kubeconfig=kubeconfig, check=False)
    assert denied.stderr.strip() == (
        f'Error from server (Forbidden): users "{target}" is forbidden: User "{name}" cannot '
        f'impersonate resource "users" in API group "" at the cluster scope')
    role = unique("impersonator")
    apiserver.kubectl("create", "clusterrole", role, "--verb=impersonate",
                      "--resource=users", f"--resource-name={target}")
    apiserver.kubectl("create", "clusterrolebinding", role, f"--clusterrole={role}",
                      f"--user={name}")
    try:
        allowed = apiserver.kubectl("get", "pods", "-n", namespace, f"--as={target}",
                                    kubeconfig=kubeconfig)
        assert allowed.returncode == 0
        whoami = apiserver.kubectl("auth", "whoami", f"--as={target}", kubeconfig=kubeconfig)
        assert whoami.stdout.split("\n")[1].split() == ["Username", target]
        group = apiserver.kubectl("get", "pods", "-n", namespace, f"--as={target}",
                                  "--as-group=admins", kubeconfig=kubeconfig, check=False)
        assert group.stderr.strip() == (
            f'Error from server (Forbidden): groups "admins" is forbidden: User "{name}" '
            f'cannot impersonate resource "groups" in API group "" at the cluster scope')
    finally:
        apiserver.kubectl("delete", "clusterrolebinding", role, check=False)
        apiserver.kubectl("delete", "clusterrole", role, check=False)


def test_escalation_is_refused_unless_escalate_or_bind(
        apiserver: ApiServer, namespace: str, user: tuple[str, Path]) -> None:
    name, kubeconfig = user
    bind(apiserver, namespace, "admin", name)
    groups = '["dev" "system:authenticated"]'

    created = apiserver.kubectl("create", "role", "pod-reader", "-n", namespace,
                                "--verb=get,list", "--resource=pods", kubeconfig=kubeconfig)
    assert created.returncode == 0
    refused = apiserver.kubectl("create", "role", "node-reader", "-n", namespace,
                                "--verb=get", "--resource=nodes", kubeconfig=kubeconfig,
                                check=False)
    assert refused.stderr.strip() == (
        f'Error from server (Forbidden): roles.rbac.authorization.k8s.io "node-reader" is '
        f'forbidden: user "{name}" (groups={groups}) is attempting to grant RBAC permissions '
        'not currently held:\n{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}')
    binding = apiserver.kubectl("create", "rolebinding", "root", "-n", namespace,
                                "--clusterrole=cluster-admin", "--user=mallory",
                                kubeconfig=kubeconfig, check=False)
    assert binding.returncode == 1
    assert ('rolebindings.rbac.authorization.k8s.io "root" is forbidden: user '
            f'"{name}" (groups={groups}) is attempting to grant RBAC permissions not '
            'currently held:\n{APIGroups:["*"], Resources:["*"], Verbs:["*"]}') \
        in binding.stderr
    assert apiserver.kubectl("get", "rolebinding", "root", "-n", namespace,
                             check=False).returncode == 1  # nothing written

    # `bind` on the role lets a user grant it without holding it; `escalate` likewise.
    helper = unique("binder")
    apiserver.kubectl("create", "clusterrole", helper, "--verb=bind,escalate",
                      "--resource=clusterroles", "--resource-name=cluster-admin")
    apiserver.kubectl("create", "rolebinding", helper, "-n", namespace,
                      f"--clusterrole={helper}", f"--user={name}")
    try:
        apiserver.kubectl("create", "rolebinding", "root", "-n", namespace,
                          "--clusterrole=cluster-admin", "--user=mallory",
                          kubeconfig=kubeconfig)
    finally:
        apiserver.kubectl("delete", "clusterrole", helper, check=False)


def test_resource_names_restrict_only_requests_that_name_an_object(
        apiserver: ApiServer, namespace: str, user: tuple[str, Path]) -> None:
    name, kubeconfig = user
    for configmap in ("open", "closed"):
        apiserver.kubectl("create", "configmap", configmap, "-n", namespace, "--from-literal=a=b")
    apiserver.kubectl("create", "role", "one-cm", "-n", namespace, "--verb=get,update,watch,list",
                      "--resource=configmaps", "--resource-name=open")
    bind(apiserver, namespace, "one-cm", name, kind="Role")
    with api_for(kubeconfig) as api:
        core = client.CoreV1Api(api)
        assert core.read_namespaced_config_map("open", namespace).data == {"a": "b"}
        expect_api_error(403, lambda: core.read_namespaced_config_map("closed", namespace))
        error = expect_api_error(403, lambda: core.list_namespaced_config_map(namespace))
        assert "cannot list resource" in body_text(error)
        # A list or watch for one name (fieldSelector metadata.name) is about that name.
        named = core.list_namespaced_config_map(namespace, field_selector="metadata.name=open")
        assert [c.metadata.name for c in named.items] == ["open"]
    watched = apiserver.kubectl("get", "configmap", "open", "-n", namespace, "--watch",
                                "--request-timeout=2s", kubeconfig=kubeconfig, check=False)
    assert "open" in watched.stdout and "Forbidden" not in watched.stderr


def test_malformed_roles_are_422_with_field_paths_and_nothing_is_written(
        apiserver: ApiServer, namespace: str) -> None:
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    code, _, body = apiserver.http("POST", f"{base}/roles", {
        "apiVersion": RBAC, "kind": "Role", "metadata": {"name": "bad"},
        "rules": [{"verbs": ["get", "frobnicate"], "apiGroups": "", "resources": ["pods"]}]})
    assert code == 422, body
    assert [(c["field"], c["reason"]) for c in body["details"]["causes"]] == [
        ("rules[0].apiGroups", "FieldValueTypeInvalid")]
    assert apiserver.http("GET", f"{base}/roles/bad")[0] == 404
    code, _, body = apiserver.http("POST", f"{base}/roles", {
        "apiVersion": RBAC, "kind": "Role", "metadata": {"name": "odd-verbs"},
        "rules": [{"verbs": ["frobnicate"], "apiGroups": [""], "resources": ["pods"]}]})
    assert code == 201, body  # unknown verbs are allowed, as in Kubernetes

    code, _, body = apiserver.http("POST", f"{base}/rolebindings", {
        "apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": "no-ref"},
        "subjects": [{"kind": "User", "name": "x"}]})
    assert code == 422, body
    assert [c["field"] for c in body["details"]["causes"]] == ["roleRef.kind", "roleRef.name"]
    assert body["message"] == (
        'RoleBinding.rbac.authorization.k8s.io "no-ref" is invalid: [roleRef.kind: '
        'Unsupported value: "": supported values: "Role", "ClusterRole", roleRef.name: '
        'Required value]')
    assert apiserver.http("GET", f"{base}/rolebindings/no-ref")[0] == 404

    apiserver.kubectl("create", "rolebinding", "fixed", "-n", namespace, "--clusterrole=view",
                      "--user=x")
    code, _, body = apiserver.http(
        "PATCH", f"{base}/rolebindings/fixed", {"roleRef": {"name": "edit"}},
        content_type="application/merge-patch+json")
    assert code == 422, body
    assert body["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "roleRef",
        "message": 'Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", '
                   'Kind:"ClusterRole", Name:"edit"}: cannot change roleRef'}]
    stored = apiserver.kubectl("get", "rolebinding", "fixed", "-n", namespace, "-o",
                               "jsonpath={.roleRef.name}").stdout
    assert stored == "view"


def test_rbac_tables_read_like_kubectl_shows_them(apiserver: ApiServer, namespace: str
                                                  ) -> None:
    apiserver.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    apiserver.kubectl("create", "rolebinding", "mixed", "-n", namespace, "--clusterrole=view",
                      "--user=ann", "--group=ops", f"--serviceaccount={namespace}:robot")
    wide = apiserver.kubectl("get", "rolebinding", "mixed", "-n", namespace, "-o", "wide")
    header, row = wide.stdout.splitlines()
    assert header.split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert row.split()[:2] == ["mixed", "ClusterRole/view"]
    assert row.split()[3:] == ["ann", "ops", f"{namespace}/robot"]
    roles = apiserver.kubectl("get", "clusterrole", "view", "admin").stdout.splitlines()
    assert roles[0].split() == ["NAME", "CREATED", "AT"]
    assert roles[1].split()[0] == "view" and roles[1].split()[1].endswith("Z")


def test_the_bootstrap_policy_is_in_place(apiserver: ApiServer) -> None:
    bindings = apiserver.kubectl("get", "clusterrolebindings", "-o", "json").stdout
    by_name = {b["metadata"]["name"]: b for b in json.loads(bindings)["items"]}
    assert by_name["cluster-admin"]["subjects"] == [
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:masters"}]
    assert by_name["keelson:node-proxier"]["roleRef"]["name"] == "system:node-proxier"
    assert by_name["keelson:node-proxier"]["subjects"][0]["name"] == "system:nodes"
    view = json.loads(apiserver.kubectl("get", "clusterrole", "view", "-o", "json").stdout)
    assert {"get", "list", "watch"} <= {verb for rule in view["rules"]
                                        for verb in rule["verbs"]}
    edit = json.loads(apiserver.kubectl("get", "clusterrole", "edit", "-o", "json").stdout)
    assert len(edit["rules"]) > len(view["rules"])  # edit aggregates view and its own


@pytest.fixture(scope="module")
def controlled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A server running its controller manager (as system:kube-controller-manager)."""
    with running_apiserver(tmp_path_factory.mktemp("rbac-controllers"), controllers=True) \
            as server:
        yield server


def test_a_new_aggregate_to_view_role_extends_view(controlled: ApiServer) -> None:
    name = unique("widgets-view")
    controlled.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": RBAC, "kind": "ClusterRole",
        "metadata": {"name": name,
                     "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"],
                   "verbs": ["get"]}]}))
    deadline = time.monotonic() + 15
    while True:
        roles = {role: json.loads(controlled.kubectl("get", "clusterrole", role, "-o",
                                                     "json").stdout)
                 for role in ("view", "edit", "admin")}
        if all(any("widgets" in rule.get("resources", []) for rule in role["rules"])
               for role in roles.values()):
            break
        assert time.monotonic() < deadline, "view/edit/admin never aggregated the new role"
        time.sleep(0.3)
    controlled.kubectl("delete", "clusterrole", name)


def test_a_put_to_a_missing_rbac_object_creates_it(apiserver: ApiServer, namespace: str
                                                   ) -> None:
    path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/put-made"
    code, _, body = apiserver.http("PUT", path, {
        "apiVersion": RBAC, "kind": "Role", "metadata": {"name": "put-made"},
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]})
    assert code == 201, body
    assert apiserver.http("GET", path)[0] == 200
