"""The Node authorizer and NodeRestriction end to end, with real node credentials.

Two node identities (``system:node:a`` and ``system:node:b`` in ``system:nodes``, client
certificates from the test server's CA) talk to a real apiserver with the official
client and kubectl, and get exactly what a kubelet gets from kube-apiserver: the Secrets,
ConfigMaps and ServiceAccount tokens their own pods reference and nothing else, writes
to their own Node, Lease and pods' status only, no taint or restricted label changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.support.apiserver import ApiServer

IMAGE = "localhost/keelson/busybox:1"


def error_of(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ApiException) as info:
        call()
    body = info.value.body
    return info.value.status, json.loads(body)["message"]


def node_api(apiserver: ApiServer, node: str) -> client.ApiClient:
    kubeconfig = apiserver.user_kubeconfig(f"system:node:{node}", ("system:nodes",))
    return config.new_client_from_config(config_file=str(kubeconfig))


def pod(name: str, node: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "serviceAccountName": "app",
                     "containers": [{"name": "c", "image": IMAGE, **spec.pop("container", {})}],
                     **spec}}


@pytest.fixture(scope="module")
def world(apiserver: ApiServer, k8s: client.ApiClient) -> Iterator[dict[str, Any]]:
    """Nodes a and b, and in one namespace: pod pa on a (mounting Secret ``mounted``,
    env from ConfigMap ``settings``), pod pb on b, an unreferenced Secret."""
    core = client.CoreV1Api(k8s)
    namespace = "kt-nodeauthz"
    core.create_namespace({"metadata": {"name": namespace}})
    for node in ("a", "b"):
        core.create_node({"metadata": {"name": node}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
    for secret in ("mounted", "unreferenced", "later"):
        core.create_namespaced_secret(namespace, {"metadata": {"name": secret},
                                                  "stringData": {"k": "v"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"},
                                                  "data": {"k": "v"}})
    env = {"envFrom": [{"configMapRef": {"name": "settings"}}]}
    core.create_namespaced_pod(namespace, pod(
        "pa", "a", volumes=[{"name": "s", "secret": {"secretName": "mounted"}}], container=env))
    core.create_namespaced_pod(namespace, pod("pb", "b"))
    with node_api(apiserver, "a") as a, node_api(apiserver, "b") as b:
        yield {"ns": namespace, "admin": core, "a": client.CoreV1Api(a), "b": client.CoreV1Api(b),
               "a_leases": client.CoordinationV1Api(a)}
    for node in ("a", "b"):
        core.delete_node(node)
    core.delete_namespace(namespace)


def test_a_node_reads_only_what_its_pods_reference(world: dict[str, Any]) -> None:
    ns, a, b = world["ns"], world["a"], world["b"]
    assert a.read_namespaced_secret("mounted", ns).data == {"k": "dg=="}
    assert a.read_namespaced_config_map("settings", ns).data == {"k": "v"}
    assert a.read_node("a").metadata.name == "a"
    assert a.read_namespaced_pod("pa", ns).spec.node_name == "a"
    assert [p.metadata.name for p in a.list_namespaced_pod(
        ns, field_selector="spec.nodeName=a").items] == ["pa"]

    assert error_of(lambda: a.read_namespaced_secret("unreferenced", ns)) == (403, (
        'secrets "unreferenced" is forbidden: User "system:node:a" cannot get resource '
        f'"secrets" in API group "" in the namespace "{ns}": no relationship found between '
        "node 'a' and this object"))
    assert error_of(lambda: b.read_namespaced_secret("mounted", ns))[0] == 403
    assert error_of(lambda: a.list_namespaced_secret(ns)) == (403, (
        'secrets is forbidden: User "system:node:a" cannot list resource "secrets" in API '
        f'group "" in the namespace "{ns}": No Object name found'))

    # A pod bound to b that mounts "later" gives b (and only b) access, at once.
    world["admin"].create_namespaced_pod(ns, pod(
        "pb2", "b", volumes=[{"name": "s", "secret": {"secretName": "later"}}]))
    assert b.read_namespaced_secret("later", ns).metadata.name == "later"
    assert error_of(lambda: a.read_namespaced_secret("later", ns))[0] == 403
    world["admin"].delete_namespaced_pod("pb2", ns, grace_period_seconds=0)


def test_a_node_writes_only_its_own_pods_status_and_node(world: dict[str, Any]) -> None:
    ns, a = world["ns"], world["a"]
    status = {"status": {"phase": "Running"}}
    assert a.patch_namespaced_pod_status("pa", ns, status).status.phase == "Running"
    assert error_of(lambda: a.patch_namespaced_pod_status("pb", ns, status)) == (403, (
        'pods "pb" is forbidden: node "a" can only update pod status for pods with '
        "spec.nodeName set to itself"))
    assert error_of(lambda: a.patch_node("b", {"metadata": {"labels": {"x": "y"}}})) == (403, (
        'nodes "b" is forbidden: node "a" is not allowed to modify node "b"'))
    assert error_of(lambda: a.patch_node_status("b", {"status": {"phase": "x"}}))[0] == 403

    assert a.patch_node("a", {"metadata": {"labels": {"example.com/disk": "ssd"}}})
    assert error_of(lambda: a.patch_node("a", {"spec": {"taints": [
        {"key": "k", "effect": "NoSchedule"}]}})) == (
        403, 'nodes "a" is forbidden: node "a" is not allowed to modify taints')
    assert error_of(lambda: a.patch_node("a", {"metadata": {"labels": {
        "node-restriction.kubernetes.io/zone": "z"}}})) == (
        403, 'nodes "a" is forbidden: is not allowed to modify labels: '
             "node-restriction.kubernetes.io/zone")
    assert error_of(lambda: a.delete_node("a")) == (403, (
        'nodes "a" is forbidden: User "system:node:a" cannot delete resource "nodes" in API '
        'group "" at the cluster scope'))
    assert error_of(lambda: a.delete_namespaced_pod("pb", ns)) == (403, (
        'pods "Unknown" is forbidden: node "a" can only delete pods with spec.nodeName set '
        "to itself"))


def test_a_node_keeps_only_its_own_lease(world: dict[str, Any]) -> None:
    leases = world["a_leases"]
    lease = {"metadata": {"name": "a"}, "spec": {"holderIdentity": "a"}}
    leases.create_namespaced_lease("kube-node-lease", lease)
    assert leases.read_namespaced_lease("a", "kube-node-lease").spec.holder_identity == "a"
    other = {"metadata": {"name": "b"}, "spec": {"holderIdentity": "a"}}
    assert error_of(lambda: leases.create_namespaced_lease("kube-node-lease", other)) == (
        403, 'leases.coordination.k8s.io "b" is forbidden: can only access node lease with '
             "the same name as the requesting node")
    assert error_of(lambda: leases.read_namespaced_lease("b", "kube-node-lease"))[0] == 403


def test_a_node_gets_tokens_only_for_its_own_pods(world: dict[str, Any]) -> None:
    ns, admin, a = world["ns"], world["admin"], world["a"]

    def token_for(pod_name: str | None) -> Any:
        spec: dict[str, Any] = {"audiences": ["api"]}
        if pod_name is not None:
            uid = admin.read_namespaced_pod(pod_name, ns).metadata.uid
            spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": pod_name,
                                      "uid": uid}
        return a.create_namespaced_service_account_token("app", ns, {"spec": spec})

    assert token_for("pa").status.token
    assert error_of(lambda: token_for("pb")) == (403, (
        'serviceaccounts "app" is forbidden: node requested token bound to a pod scheduled '
        "on a different node"))
    assert error_of(lambda: token_for(None)) == (
        403, 'serviceaccounts "app" is forbidden: node requested token not bound to a pod')


def test_kubectl_with_a_node_credential_sees_the_same(apiserver: ApiServer,
                                                      world: dict[str, Any]) -> None:
    kubeconfig = apiserver.user_kubeconfig("system:node:a", ("system:nodes",))
    result = apiserver.kubectl("get", "secret", "unreferenced", "-n", world["ns"],
                               kubeconfig=kubeconfig, check=False)
    assert result.stderr.strip() == (
        'Error from server (Forbidden): secrets "unreferenced" is forbidden: User '
        '"system:node:a" cannot get resource "secrets" in API group "" in the namespace '
        f"\"{world['ns']}\": no relationship found between node 'a' and this object")
    whoami = apiserver.kubectl("auth", "can-i", "--list", kubeconfig=kubeconfig, check=False)
    assert whoami.returncode == 0  # incomplete for a node, but answered
