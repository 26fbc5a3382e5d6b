"""kubectl's typed `create` commands, which send protobuf, against a real keelson apiserver.

`kubectl create namespace|configmap|deployment|service` POST
`application/vnd.kubernetes.protobuf` and never retry as JSON, so each command working is the
user-visible proof; what `kubectl get -o json` shows afterwards proves the fields arrived
(including an explicit `replicas: 0`, which a dropped field would turn into the default 1).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apiserver import ApiServer, running_apiserver, unique

IMAGE = "localhost/keelson/busybox:1"


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with running_apiserver(tmp_path_factory.mktemp("apiserver")) as server:
        yield server


@pytest.fixture
def namespace(apiserver: ApiServer) -> Iterator[str]:
    """Created the protobuf way: `kubectl create namespace` is the first thing under test."""
    name = unique()
    result = apiserver.kubectl("create", "namespace", name)
    assert result.stdout.strip() == f"namespace/{name} created"
    yield name
    apiserver.kubectl("delete", "namespace", name, "--wait=false", check=False)


def get_json(apiserver: ApiServer, *args: str) -> dict[str, Any]:
    return json.loads(apiserver.kubectl("get", *args, "-o", "json").stdout)


def test_create_namespace(apiserver: ApiServer, namespace: str):
    created = get_json(apiserver, "namespace", namespace)

    assert created["metadata"]["name"] == namespace
    assert created["status"]["phase"] == "Active"


def test_create_configmap_with_text_and_binary_data(apiserver: ApiServer, namespace: str,
                                                    tmp_path: Path):
    blob = tmp_path / "blob"
    blob.write_bytes(bytes(range(256)))
    result = apiserver.kubectl("create", "configmap", "kt-cm", "-n", namespace,
                               "--from-literal=greeting=hello", f"--from-file=blob={blob}")
    assert result.stdout.strip() == "configmap/kt-cm created"

    created = get_json(apiserver, "configmap", "kt-cm", "-n", namespace)
    assert created["data"] == {"greeting": "hello"}
    assert created["binaryData"] == {"blob": json.loads(apiserver.kubectl(
        "create", "configmap", "x", f"--from-file=blob={blob}", "--dry-run=client",
        "-o", "json").stdout)["binaryData"]["blob"]}


def test_create_deployment(apiserver: ApiServer, namespace: str):
    apiserver.kubectl("create", "deployment", "kt-web", "-n", namespace, f"--image={IMAGE}",
                      "--replicas=3", "--port=80")

    created = get_json(apiserver, "deployment", "kt-web", "-n", namespace)
    assert created["spec"]["replicas"] == 3
    assert created["spec"]["selector"] == {"matchLabels": {"app": "kt-web"}}
    container = created["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert container["ports"][0]["containerPort"] == 80


def test_create_deployment_with_zero_replicas_keeps_zero(apiserver: ApiServer, namespace: str):
    apiserver.kubectl("create", "deployment", "kt-idle", "-n", namespace, f"--image={IMAGE}",
                      "--replicas=0")

    assert get_json(apiserver, "deployment", "kt-idle", "-n", namespace)["spec"]["replicas"] == 0


def test_create_clusterip_service(apiserver: ApiServer, namespace: str):
    apiserver.kubectl("create", "service", "clusterip", "kt-svc", "-n", namespace,
                      "--tcp=80:8080", "--tcp=443:https")

    spec = get_json(apiserver, "service", "kt-svc", "-n", namespace)["spec"]
    assert [(p["port"], p["targetPort"], p["protocol"]) for p in spec["ports"]] == [
        (80, 8080, "TCP"), (443, "https", "TCP")]
    assert ipaddress.ip_address(spec["clusterIP"]) in ipaddress.ip_network("10.96.0.0/12")


def test_create_nodeport_service_gets_a_node_port(apiserver: ApiServer, namespace: str):
    apiserver.kubectl("create", "service", "nodeport", "kt-np", "-n", namespace,
                      "--tcp=80:8080")

    spec = get_json(apiserver, "service", "kt-np", "-n", namespace)["spec"]
    assert spec["type"] == "NodePort"
    assert 30000 <= spec["ports"][0]["nodePort"] <= 32767


def test_malformed_protobuf_is_a_bad_request(apiserver: ApiServer, namespace: str):
    code, _, body = apiserver.http("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                                   b"k8s\x00\x0a\x05garbage",
                                   content_type="application/vnd.kubernetes.protobuf")

    assert code == 400
    assert body["kind"] == "Status"
    assert body["reason"] == "BadRequest"
    assert body["message"]


def test_create_rbac_objects(apiserver: ApiServer, namespace: str):
    name = unique("reader")
    apiserver.kubectl("create", "role", name, "-n", namespace, "--verb=get,list",
                      "--resource=pods,deployments.apps", "--resource-name=web")
    apiserver.kubectl("create", "clusterrole", name, "--verb=get", "--non-resource-url=/x/*")
    apiserver.kubectl("create", "rolebinding", name, "-n", namespace, f"--role={name}",
                      "--user=ann", "--group=ops", f"--serviceaccount={namespace}:robot")
    apiserver.kubectl("create", "clusterrolebinding", name, f"--clusterrole={name}",
                      "--user=ann")
    try:
        role = get_json(apiserver, "role", name, "-n", namespace)
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["web"],
             "verbs": ["get", "list"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"],
             "verbs": ["get", "list"]}]
        cluster_role = get_json(apiserver, "clusterrole", name)
        assert cluster_role["rules"] == [{"nonResourceURLs": ["/x/*"], "verbs": ["get"]}]
        binding = get_json(apiserver, "rolebinding", name, "-n", namespace)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": name}
        assert binding["subjects"] == [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "ann"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "ops"},
            {"kind": "ServiceAccount", "name": "robot", "namespace": namespace}]
        cluster_binding = get_json(apiserver, "clusterrolebinding", name)
        assert cluster_binding["roleRef"]["kind"] == "ClusterRole"
        # kubectl auth can-i sends a SelfSubjectAccessReview as protobuf too.
        assert apiserver.kubectl("auth", "can-i", "get", "pods", "-n", namespace
                                 ).stdout.strip() == "yes"
    finally:
        apiserver.kubectl("delete", "clusterrolebinding,clusterrole", name, check=False)
