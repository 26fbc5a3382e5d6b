"""Bad input against a real ``keelson apiserver``: the right Status, nothing stored.

Every case checks the HTTP code and the Status ``reason`` a client branches on, that
the object did not appear, and (the fixture's next request) that the server still serves.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.apiserver import ApiServer

CONFIGMAP: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "kt-bad"}, "data": {"a": "1"}}


def assert_status(result: tuple[int, dict[str, str], Any], code: int, reason: str) -> dict:
    got_code, _, body = result
    assert isinstance(body, dict), body
    assert (got_code, body.get("kind"), body.get("code"), body.get("reason")) == \
        (code, "Status", code, reason), body
    return body


def assert_nothing_stored(server: ApiServer, namespace: str) -> None:
    code, _, listing = server.http("GET", f"/api/v1/namespaces/{namespace}/configmaps")
    assert code == 200
    assert listing["items"] == []


@pytest.mark.parametrize(("body", "content_type", "code", "reason"), [
    (b'{"metadata": {"name": "kt-bad"', "application/json", 400, "BadRequest"),
    (b"metadata: {name: kt-bad\n  - ]", "application/yaml", 400, "BadRequest"),
    (b'["not", "an", "object"]', "application/json", 400, "BadRequest"),
    (b'{"metadata": {"name": "kt-bad"}, "data": {"a": 1}}', "application/json", 400,
     "BadRequest"),
    (b'{"metadata": {"name": "kt-bad", "labels": "x"}}', "application/json", 400,
     "BadRequest"),
    (b'{"metadata": {"name": "kt-bad"}, "dataa": {}}', "application/json", 400, "BadRequest"),
    (b'{"metadata": {"name": "kt-bad"}}', "text/plain", 415, "UnsupportedMediaType"),
    (b'{"metadata": {"name": "kt-bad"}}', "application/vnd.kubernetes.protobuf", 400,
     "BadRequest"),
    (b"", "application/json", 400, "BadRequest"),
], ids=["malformed-json", "malformed-yaml", "not-an-object", "wrong-type-data",
        "wrong-type-labels", "unknown-field-strict", "text-plain", "protobuf", "empty"])
def test_undecodable_bodies(apiserver: ApiServer, namespace: str, body: bytes,
                            content_type: str, code: int, reason: str) -> None:
    result = apiserver.http("POST", f"/api/v1/namespaces/{namespace}/configmaps"
                            "?fieldValidation=Strict", body, content_type=content_type)
    assert_status(result, code, reason)
    assert_nothing_stored(apiserver, namespace)


@pytest.mark.parametrize("name", ["Kt-Upper", "kt_underscore", "-kt", "kt." * 90 + "x", ""])
def test_invalid_names(apiserver: ApiServer, namespace: str, name: str) -> None:
    body = {**CONFIGMAP, "metadata": {"name": name}}
    status = assert_status(apiserver.http("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                                          body), 422, "Invalid")
    assert [c["field"] for c in status["details"]["causes"]] == ["metadata.name"]
    assert_nothing_stored(apiserver, namespace)


def test_body_over_three_mib(apiserver: ApiServer, namespace: str) -> None:
    big = {**CONFIGMAP, "data": {"a": "x" * (3 * 1024 * 1024)}}
    assert_status(apiserver.http("POST", f"/api/v1/namespaces/{namespace}/configmaps", big,
                                 timeout=30), 413, "RequestEntityTooLarge")
    assert_nothing_stored(apiserver, namespace)


def test_unauthenticated(apiserver: ApiServer, namespace: str) -> None:
    assert_status(apiserver.http("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                                 CONFIGMAP, authenticated=False), 401, "Unauthorized")
    assert_status(apiserver.http("GET", "/api/v1/pods", authenticated=False),
                  401, "Unauthorized")
    code, _, _ = apiserver.http("GET", "/readyz", authenticated=False)
    assert code == 200
    bogus = apiserver.http("GET", "/api/v1/pods", authenticated=False,
                           headers={"Authorization": "Bearer kt-not-a-token"})
    assert_status(bogus, 401, "Unauthorized")
    assert_nothing_stored(apiserver, namespace)


def test_not_found(apiserver: ApiServer, namespace: str) -> None:
    body = assert_status(apiserver.http("GET", f"/api/v1/namespaces/{namespace}/configmaps/"
                                        "kt-missing"), 404, "NotFound")
    assert body["details"]["name"] == "kt-missing"
    assert_status(apiserver.http("GET", "/api/v1/kt-nonsense"), 404, "NotFound")
    assert_status(apiserver.http("DELETE", f"/api/v1/namespaces/{namespace}/configmaps/"
                                 "kt-missing"), 404, "NotFound")


def test_already_exists_and_conflict(apiserver: ApiServer, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    code, _, created = apiserver.http("POST", path, CONFIGMAP)
    assert code == 201
    assert_status(apiserver.http("POST", path, {**CONFIGMAP, "data": {"a": "2"}}),
                  409, "AlreadyExists")
    stale = {**created, "metadata": {**created["metadata"], "resourceVersion": "1"},
             "data": {"a": "3"}}
    assert_status(apiserver.http("PUT", f"{path}/kt-bad", stale), 409, "Conflict")
    _, _, stored = apiserver.http("GET", f"{path}/kt-bad")
    assert stored["data"] == {"a": "1"}
    assert stored["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


@pytest.mark.parametrize(("spec", "field"), [
    ({"clusterIP": "10.96.0.300", "ports": [{"port": 80}]}, "spec.clusterIP"),
    ({"clusterIP": "192.168.1.1", "ports": [{"port": 80}]}, "spec.clusterIP"),
    ({"type": "NodePort", "ports": [{"port": 80, "nodePort": 29999}]}, "spec.ports[0].nodePort"),
    ({"type": "NodePort", "ports": [{"port": 80, "nodePort": 32768}]}, "spec.ports[0].nodePort"),
    ({"ports": [{"port": 0}]}, "spec.ports[0].port"),
], ids=["bad-ip", "ip-outside-range", "nodeport-low", "nodeport-high", "port-zero"])
def test_invalid_services(apiserver: ApiServer, namespace: str, spec: dict[str, Any],
                          field: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/services"
    status = assert_status(apiserver.http("POST", path, {"metadata": {"name": "kt-svc"},
                                                         "spec": spec}), 422, "Invalid")
    assert any(c["field"].startswith(field) for c in status["details"]["causes"]), status
    code, _, listing = apiserver.http("GET", path)
    assert code == 200 and listing["items"] == []


POD_SPEC: dict[str, Any] = {"containers": [{"name": "c", "image": "localhost/keelson/busybox:1"}]}


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/namespaces/{ns}/pods",
     {"metadata": {"name": "kt-p"}, "spec": {"containers": [{
         "name": "c", "image": "localhost/keelson/busybox:1",
         "resources": {"limits": {"cpu": "lots"}}}]}},
     "spec.containers[0].resources.limits.cpu"),
    ("/api/v1/namespaces/{ns}/pods",
     {"metadata": {"name": "kt-p"}, "spec": {"containers": [{
         "name": "c", "image": "localhost/keelson/busybox:1",
         "resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}]}},
     "spec.containers[0].resources.requests"),
    ("/api/v1/namespaces/{ns}/pods",
     {"metadata": {"name": "kt-p", "ownerReferences": [{"kind": "ReplicaSet"}]},
      "spec": POD_SPEC},
     "metadata.ownerReferences[0].uid"),
    ("/apis/apps/v1/namespaces/{ns}/deployments",
     {"metadata": {"name": "kt-d"}, "spec": {
         "selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]},
         "template": {"metadata": {"labels": {"app": "kt"}}, "spec": POD_SPEC}}},
     "spec.selector"),
    ("/apis/apps/v1/namespaces/{ns}/replicasets",
     {"metadata": {"name": "kt-rs"}, "spec": {
         "selector": {"matchExpressions": [{"key": "app", "operator": "In",
                                            "values": ["web"]}]},
         "template": {"metadata": {"labels": {"app": "db"}}, "spec": POD_SPEC}}},
     "spec.template.metadata.labels"),
], ids=["bad-quantity", "request-over-limit", "owner-reference", "selector-operator",
        "selector-expression-mismatch"])
def test_invalid_objects(apiserver: ApiServer, namespace: str, path: str,
                         body: dict[str, Any], field: str) -> None:
    url = path.format(ns=namespace)
    status = assert_status(apiserver.http("POST", url, body), 422, "Invalid")
    assert field in [c["field"] for c in status["details"]["causes"]], status
    code, _, listing = apiserver.http("GET", url)
    assert code == 200 and listing["items"] == []
