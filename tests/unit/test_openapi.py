"""OpenAPI documents, schema lookups, strict field validation and type checks."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import sys
from pathlib import Path

import pytest
from aiohttp import web

from apiserver.openapi import (
    OPENAPI_V2_PROTOBUF_TYPE,
    find_type_errors,
    find_unknown_fields,
    openapi_v2,
    openapi_v2_protobuf,
    openapi_v3_document,
    openapi_v3_index,
    schema_for,
)
from apiserver.openapi.resources import RESOURCES
from apiserver.openapi.schema import definitions
from apiserver.patch import apply_strategic_merge_patch

SERVED_KINDS = [
    ("v1", kind)
    for kind in ("Namespace", "Node", "Pod", "Service", "Endpoints", "Event", "ConfigMap",
                 "Secret", "ServiceAccount")
] + [
    ("v1", "Binding"),
    ("authentication.k8s.io/v1", "TokenRequest"),
    ("authentication.k8s.io/v1", "TokenReview"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("autoscaling/v1", "Scale"),
    ("coordination.k8s.io/v1", "Lease"),
    ("v1", "Status"),
    ("v1", "DeleteOptions"),
    ("v1", "WatchEvent"),
]
LIST_KINDS = [
    (api_version, kind + "List")
    for api_version, kind in SERVED_KINDS
    if kind not in ("Binding", "Scale", "Status", "DeleteOptions", "WatchEvent", "TokenRequest",
                    "TokenReview")
]
GROUP_VERSIONS = [
    "api/v1",
    "apis/apps/v1",
    "apis/authentication.k8s.io/v1",
    "apis/authorization.k8s.io/v1",
    "apis/coordination.k8s.io/v1",
    "apis/discovery.k8s.io/v1",
    "apis/rbac.authorization.k8s.io/v1",
]
REQUIRED_PATHS = {
    "api/v1": [
        "/api/v1/namespaces/{namespace}/pods",
        "/api/v1/namespaces/{namespace}/pods/{name}",
        "/api/v1/namespaces/{namespace}/pods/{name}/status",
        "/api/v1/namespaces/{namespace}/pods/{name}/binding",
        "/api/v1/namespaces/{namespace}/pods/{name}/log",
        "/api/v1/nodes",
        "/api/v1/nodes/{name}",
        "/api/v1/nodes/{name}/status",
        "/api/v1/namespaces",
        "/api/v1/namespaces/{name}",
        "/api/v1/namespaces/{name}/status",
        "/api/v1/namespaces/{namespace}/services/{name}",
        "/api/v1/namespaces/{namespace}/services/{name}/status",
        "/api/v1/namespaces/{namespace}/endpoints/{name}",
        "/api/v1/namespaces/{namespace}/events/{name}",
        "/api/v1/namespaces/{namespace}/configmaps/{name}",
        "/api/v1/namespaces/{namespace}/secrets/{name}",
        "/api/v1/namespaces/{namespace}/serviceaccounts/{name}",
        "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
    ],
    # TokenReview and SelfSubjectReview are create-only: one path, one POST each.
    "apis/authentication.k8s.io/v1": ["/apis/authentication.k8s.io/v1/tokenreviews",
                                      "/apis/authentication.k8s.io/v1/selfsubjectreviews"],
    "apis/authorization.k8s.io/v1": [
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews",
    ],
    "apis/rbac.authorization.k8s.io/v1": [
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{name}",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings/{name}",
    ],
    "apis/apps/v1": [
        f"/apis/apps/v1/namespaces/{{namespace}}/{plural}{suffix}"
        for plural in ("deployments", "replicasets")
        for suffix in ("", "/{name}", "/{name}/status", "/{name}/scale")
    ],
    "apis/discovery.k8s.io/v1": [
        "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
        "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices/{name}",
    ],
    "apis/coordination.k8s.io/v1": [
        "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
        "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}",
    ],
}
ACTIONS = {
    "get",
    "list",
    "watch",
    "watchlist",
    "put",
    "patch",
    "delete",
    "deletecollection",
    "post",
}
VERBS = ("get", "put", "post", "delete", "patch")


def v3(group_version: str) -> dict:
    document = openapi_v3_document(group_version)
    assert document is not None
    return json.loads(document)


def gvk_of(api_version: str, kind: str) -> dict:
    group, _, version = api_version.rpartition("/")
    return {"group": group, "version": version, "kind": kind}


# --- schemas ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("api_version", "kind"), SERVED_KINDS + LIST_KINDS)
def test_every_served_kind_has_a_schema_with_its_gvk(api_version: str, kind: str) -> None:
    schema = schema_for(api_version, kind)

    assert schema is not None
    assert gvk_of(api_version, kind) in schema["x-kubernetes-group-version-kind"]


def test_unknown_kind_has_no_schema() -> None:
    assert schema_for("example.com/v1", "Widget") is None
    assert schema_for("v1", "PersistentVolume") is None


@pytest.mark.parametrize(
    ("definition", "field", "merge_key", "strategy"),
    [
        ("io.k8s.api.core.v1.PodSpec", "containers", "name", "merge"),
        ("io.k8s.api.core.v1.PodSpec", "initContainers", "name", "merge"),
        ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "name", "merge"),
        ("io.k8s.api.core.v1.PodSpec", "volumes", "name", "merge,retainKeys"),
        ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "name", "merge"),
        ("io.k8s.api.core.v1.PodSpec", "hostAliases", "ip", "merge"),
        ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "topologyKey", "merge"),
        ("io.k8s.api.core.v1.Container", "env", "name", "merge"),
        ("io.k8s.api.core.v1.Container", "volumeMounts", "mountPath", "merge"),
        ("io.k8s.api.core.v1.Container", "volumeDevices", "devicePath", "merge"),
        ("io.k8s.api.core.v1.Container", "ports", "containerPort", "merge"),
        ("io.k8s.api.core.v1.ServiceSpec", "ports", "port", "merge"),
        ("io.k8s.api.core.v1.NodeStatus", "addresses", "type", "merge"),
        ("io.k8s.api.core.v1.NodeStatus", "conditions", "type", "merge"),
        ("io.k8s.api.core.v1.PodStatus", "conditions", "type", "merge"),
        ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "type", "merge"),
        ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "type", "merge"),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "uid", "merge"),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", None, "merge"),
        ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", None, "retainKeys"),
    ],
)
def test_patch_metadata_is_in_the_schema(
    definition: str, field: str, merge_key: str | None, strategy: str
) -> None:
    field_schema = definitions()[definition]["properties"][field]

    assert field_schema.get("x-kubernetes-patch-merge-key") == merge_key
    assert field_schema["x-kubernetes-patch-strategy"] == strategy


# --- documents ----------------------------------------------------------------------------------


def test_v2_document_is_swagger_with_every_served_kind() -> None:
    document = json.loads(openapi_v2())

    assert document["swagger"] == "2.0"
    gvks = [
        gvk
        for definition in document["definitions"].values()
        for gvk in definition.get("x-kubernetes-group-version-kind", ())
    ]
    for api_version, kind in SERVED_KINDS + LIST_KINDS:
        assert gvk_of(api_version, kind) in gvks
    for paths in REQUIRED_PATHS.values():
        assert set(paths) <= set(document["paths"])


def test_v2_protobuf_carries_the_document() -> None:
    encoded = openapi_v2_protobuf()

    # Field 1 (swagger, length-delimited) comes first, as client-go's gnostic decoder expects.
    assert encoded[:5] == b"\x0a\x032.0"
    assert b"io.k8s.api.core.v1.Pod" in encoded
    assert b"x-kubernetes-patch-merge-key" in encoded
    assert b"patchCoreV1NamespacedPod" in encoded


def test_v3_index_lists_every_group_version_with_its_content_hash() -> None:
    index = openapi_v3_index()

    assert sorted(index["paths"]) == sorted(GROUP_VERSIONS)
    for group_version, entry in index["paths"].items():
        expected_hash = hashlib.sha512(openapi_v3_document(group_version)).hexdigest().upper()
        assert entry["serverRelativeURL"] == f"/openapi/v3/{group_version}?hash={expected_hash}"


def test_v3_unknown_group_version_is_none() -> None:
    assert openapi_v3_document("apis/batch/v1") is None


@pytest.mark.parametrize("group_version", GROUP_VERSIONS)
def test_v3_document_has_paths_operations_and_resolvable_refs(group_version: str) -> None:
    document = v3(group_version)

    assert document["openapi"].startswith("3.")
    assert set(REQUIRED_PATHS[group_version]) <= set(document["paths"])
    schemas = document["components"]["schemas"]
    text = json.dumps(document)
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs, "operations must reference schemas"
    assert refs <= set(schemas), f"dangling refs: {refs - set(schemas)}"
    for path, item in document["paths"].items():
        for verb in VERBS:
            if verb in item:
                operation = item[verb]
                assert operation["x-kubernetes-action"] in ACTIONS, (path, verb)
                assert set(operation["x-kubernetes-group-version-kind"]) == {
                    "group",
                    "version",
                    "kind",
                }


@pytest.mark.parametrize("group_version", [gv for gv in GROUP_VERSIONS
                                           if gv not in ("apis/authentication.k8s.io/v1",
                                                         "apis/authorization.k8s.io/v1")])
def test_every_patch_operation_accepts_field_validation(group_version: str) -> None:
    for document, name_of in (
        (v3(group_version), lambda p: p["name"]),
        (json.loads(openapi_v2()), lambda p: p["name"]),
    ):
        patches = [
            (path, item["patch"])
            for path, item in document["paths"].items()
            if "patch" in item and path.startswith(f"/{group_version}/")
        ]
        assert patches
        for path, operation in patches:
            names = {name_of(parameter) for parameter in operation["parameters"]}
            assert {"fieldValidation", "dryRun", "fieldManager"} <= names, path


def supports_query_param_v3(document: dict, gvk: dict, query_param: str) -> bool:
    """kubectl's check (cli-runtime query_param_verifier_v3.go), transcribed."""
    for item in document["paths"].values():
        operation = item.get("patch")
        if operation is None or operation.get("x-kubernetes-group-version-kind") != gvk:
            continue
        return any(p.get("name") == query_param for p in operation.get("parameters", ()))
    return False


@pytest.mark.parametrize(
    ("group_version", "api_version", "kind"),
    [
        ("api/v1", "v1", kind)
        for kind in ("Namespace", "Node", "Pod", "Service", "Endpoints", "Event", "ConfigMap")
    ]
    + [
        ("apis/apps/v1", "apps/v1", "Deployment"),
        ("apis/apps/v1", "apps/v1", "ReplicaSet"),
        ("apis/discovery.k8s.io/v1", "discovery.k8s.io/v1", "EndpointSlice"),
        ("apis/coordination.k8s.io/v1", "coordination.k8s.io/v1", "Lease"),
    ],
)
def test_kubectl_would_enable_server_side_field_validation(
    group_version: str, api_version: str, kind: str
) -> None:
    assert supports_query_param_v3(v3(group_version), gvk_of(api_version, kind), "fieldValidation")


def test_v3_schema_for_kubectl_apply_has_gvk_and_patch_extensions() -> None:
    schemas = v3("apis/apps/v1")["components"]["schemas"]

    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert {"group": "apps", "version": "v1", "kind": "Deployment"} in deployment[
        "x-kubernetes-group-version-kind"
    ]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}


# --- strict field validation and type checks ----------------------------------------------------


def valid_deployment() -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "b"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "localhost/keelson/busybox:1",
                            "command": ["httpd", "-f"],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}],
                            "resources": {"limits": {"cpu": "500m", "memory": 67108864}},
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                        }
                    ],
                    "terminationGracePeriodSeconds": 5,
                },
            },
        },
    }


def valid_pod() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "ownerReferences": []},
        "spec": {
            "containers": [{"name": "c", "image": "localhost/keelson/busybox:1"}],
            "nodeName": None,
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        },
        "status": {"phase": "Running", "podIP": "10.244.0.5", "conditions": []},
    }


def valid_service() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "type": "ClusterIP",
        },
    }


@pytest.mark.parametrize(
    "obj", [valid_deployment(), valid_pod(), valid_service()], ids=["deployment", "pod", "service"]
)
def test_valid_objects_have_no_findings(obj: dict) -> None:
    assert find_unknown_fields(obj["apiVersion"], obj["kind"], obj) == []
    assert find_type_errors(obj["apiVersion"], obj["kind"], obj) == []


def test_unknown_fields_are_reported_with_kubernetes_paths() -> None:
    obj = valid_deployment()
    obj["metadata"]["lables"] = {"x": "y"}
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    obj["spec"]["bogus"] = {"deep": 1}

    unknown = find_unknown_fields("apps/v1", "Deployment", obj)

    assert sorted(unknown) == [
        "metadata.lables",
        "spec.bogus",
        "spec.template.spec.containers[0].imagePullPolcy",
    ]


def test_unknown_fields_inside_maps_and_free_form_objects_are_allowed() -> None:
    event = {
        "type": "ADDED",
        "object": {"anything": {"goes": [1, "here"]}},
    }
    assert find_unknown_fields("v1", "WatchEvent", event) == []
    assert find_type_errors("v1", "WatchEvent", event) == []


def test_unknown_kind_reports_nothing() -> None:
    assert find_unknown_fields("example.com/v1", "Widget", {"spec": {"x": 1}}) == []
    assert find_type_errors("example.com/v1", "Widget", {"spec": {"x": 1}}) == []


def test_type_errors_are_reported() -> None:
    obj = valid_deployment()
    obj["metadata"]["labels"] = {"app": 1}
    obj["spec"]["replicas"] = "3"
    obj["spec"]["template"]["spec"]["containers"][0]["ports"] = {"containerPort": 80}
    obj["spec"]["template"]["spec"]["containers"][0]["command"] = "httpd -f"
    obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1.5
    obj["spec"]["selector"] = ["app"]

    errors = dict(find_type_errors("apps/v1", "Deployment", obj))

    assert errors == {
        "metadata.labels.app": "expected string, got integer",
        "spec.replicas": "expected integer, got string",
        "spec.template.spec.containers[0].ports": "expected array, got object",
        "spec.template.spec.containers[0].command": "expected array, got string",
        "spec.template.spec.terminationGracePeriodSeconds": "expected integer, got number",
        "spec.selector": "expected object, got array",
    }


@pytest.mark.parametrize("value", [8080, "http"])
def test_int_or_string_accepts_both(value) -> None:
    service = valid_service()
    service["spec"]["ports"][0]["targetPort"] = value

    assert find_type_errors("v1", "Service", service) == []


@pytest.mark.parametrize("value", [True, [80], {"port": 80}])
def test_int_or_string_rejects_other_types(value) -> None:
    service = valid_service()
    service["spec"]["ports"][0]["targetPort"] = value

    assert [path for path, _ in find_type_errors("v1", "Service", service)] == [
        "spec.ports[0].targetPort"
    ]


@pytest.mark.parametrize(("value", "ok"), [("1Gi", True), (2, True), (0.5, True), ([1], False)])
def test_quantity_accepts_numbers_and_strings(value, ok: bool) -> None:
    pod = valid_pod()
    pod["spec"]["containers"][0]["resources"] = {"requests": {"memory": value}}

    assert (find_type_errors("v1", "Pod", pod) == []) is ok


# --- the documents as kubectl reads them ----------------------------------------------------------
# A stub server on loopback serves discovery, the OpenAPI documents and one Deployment; the real
# kubectl then explains, creates and applies against it. Proves that kubectl decodes both
# documents (v2 only as protobuf), turns server-side field validation on, and computes its
# client-side apply patch from our schema extensions.

KUBECTL = Path(sys.executable).with_name("kubectl")
APPLIED = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "kt-web", "namespace": "default"},
    "spec": {
        "selector": {"matchLabels": {"app": "kt-web"}},
        "template": {
            "metadata": {"labels": {"app": "kt-web"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "localhost/keelson/busybox:1",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    }
                ]
            },
        },
    },
}


def _live_deployment() -> dict:
    live = copy.deepcopy(APPLIED)
    live["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(APPLIED)
    }
    return live


def _resource_list(group_version_path: str) -> dict:
    resources = []
    for resource in RESOURCES:
        if resource.group_version_path != group_version_path:
            continue
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        resources.append(
            {"name": resource.plural, "namespaced": resource.namespaced, "kind": resource.kind}
            | {"singularName": resource.kind.lower(), "verbs": verbs}
        )
    group_version = group_version_path.split("/", 1)[1]
    return {"kind": "APIResourceList", "groupVersion": group_version, "resources": resources}


@pytest.fixture
async def stub_apiserver():
    requests: list[tuple[str, str, str]] = []
    group_versions = sorted({(r.group, r.version) for r in RESOURCES if r.group})

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path.strip("/")
        requests.append((request.method, request.path_qs, await request.text()))
        if path == "api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        if path == "apis":
            groups = [
                {
                    "name": group,
                    "versions": [{"groupVersion": f"{group}/{version}", "version": version}],
                    "preferredVersion": {"groupVersion": f"{group}/{version}", "version": version},
                }
                for group, version in group_versions
            ]
            return web.json_response({"kind": "APIGroupList", "groups": groups})
        if path in {resource.group_version_path for resource in RESOURCES}:
            return web.json_response(_resource_list(path))
        if path == "openapi/v2" and OPENAPI_V2_PROTOBUF_TYPE in request.headers.get("Accept", ""):
            return web.Response(body=openapi_v2_protobuf(), content_type="application/octet-stream")
        if path == "openapi/v3":
            return web.json_response(openapi_v3_index())
        if path.startswith("openapi/v3/"):
            return web.Response(
                body=openapi_v3_document(path.removeprefix("openapi/v3/")),
                content_type="application/json",
            )
        if path == "apis/apps/v1/namespaces/default/deployments/kt-web":
            return web.json_response(_live_deployment())
        return web.json_response({"kind": "Status", "code": 404}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", requests
    await runner.cleanup()


async def kubectl(server: str, tmp_path: Path, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        *("--server", server, "--cache-dir", str(tmp_path / "cache"), *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"KUBECONFIG": "/dev/null", "HOME": str(tmp_path)},
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return output.decode()


needs_kubectl = pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl is not installed")


@needs_kubectl
async def test_kubectl_explain_reads_the_v3_document(stub_apiserver, tmp_path: Path) -> None:
    server, _ = stub_apiserver

    output = await kubectl(server, tmp_path, "explain", "deployments.spec.template.spec.containers")

    assert "KIND:       Deployment" in output, output
    assert "imagePullPolicy\t<string>" in output
    assert "name\t<string> -required-" in output


@needs_kubectl
async def test_kubectl_explain_reads_the_v2_protobuf(stub_apiserver, tmp_path: Path) -> None:
    server, _ = stub_apiserver

    output = await kubectl(
        server, tmp_path, "explain", "pods.spec.containers.ports", "--output=plaintext-openapiv2"
    )

    assert "RESOURCE: ports <[]Object>" in output, output
    assert "containerPort\t<integer> -required-" in output


@needs_kubectl
async def test_kubectl_turns_on_server_side_field_validation(
    stub_apiserver, tmp_path: Path
) -> None:
    server, requests = stub_apiserver
    manifest = tmp_path / "pod.json"
    manifest.write_text(json.dumps(valid_pod()))

    await kubectl(server, tmp_path, "create", "-f", str(manifest))

    posts = [path for method, path, _ in requests if method == "POST"]
    assert posts == [
        "/api/v1/namespaces/default/pods?fieldManager=kubectl-create&fieldValidation=Strict"
    ]


@needs_kubectl
async def test_kubectl_apply_patch_is_built_from_our_schema(stub_apiserver, tmp_path: Path) -> None:
    server, requests = stub_apiserver
    desired = copy.deepcopy(APPLIED)
    container = desired["spec"]["template"]["spec"]["containers"][0]
    container["image"] = "localhost/keelson/busybox:2"
    container["env"] = [{"name": "A", "value": "1"}]
    manifest = tmp_path / "deployment.json"
    manifest.write_text(json.dumps(desired))

    await kubectl(server, tmp_path, "apply", "-f", str(manifest))

    [patch] = [json.loads(body) for method, _, body in requests if method == "PATCH"]
    pod_spec_patch = patch["spec"]["template"]["spec"]
    assert pod_spec_patch["$setElementOrder/containers"] == [{"name": "app"}]
    assert pod_spec_patch["containers"][0]["env"] == [{"$patch": "delete", "name": "B"}]
    # ... and the server applies it to what the user asked for.
    result = apply_strategic_merge_patch(
        _live_deployment(), patch, api_version="apps/v1", kind="Deployment"
    )
    result["metadata"].pop("annotations")
    assert result == desired


def test_create_only_kinds_document_only_their_post() -> None:
    document = v3("apis/authentication.k8s.io/v1")
    assert sorted(document["paths"]) == ["/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                         "/apis/authentication.k8s.io/v1/tokenreviews"]
    item = document["paths"]["/apis/authentication.k8s.io/v1/tokenreviews"]
    assert set(item) == {"post", "parameters"}
    assert item["post"]["operationId"] == "createAuthenticationV1TokenReview"
    token = v3("api/v1")["paths"]["/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"]
    assert set(token) == {"post", "parameters"}
    assert token["post"]["x-kubernetes-group-version-kind"] == gvk_of(
        "authentication.k8s.io/v1", "TokenRequest")
