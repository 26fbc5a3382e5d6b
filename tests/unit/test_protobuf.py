"""Protobuf request bodies decode to the JSON Kubernetes would produce for the same object.

The oracle is kubectl itself: a recording stub server captures the protobuf body a real
`kubectl create ...` sends, and the decoded dict must equal what the same command prints with
`--dry-run=client -o json`. Hand-built messages cover what kubectl never sends (negative and
packed integers, times, IntOrString names, quantities, pointers set to zero, malformed input).
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from apiserver.protobuf import ProtobufError, decode_object
from apiserver.protobuf.decoder import FIELDS_FILE, SPECIAL, go_duration
from apiserver.protobuf.wire import iter_fields, unpack_fixed

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"

# --- a minimal protobuf writer for hand-built bodies ------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def num(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def raw(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def text(number: int, value: str) -> bytes:
    return raw(number, value.encode())


def entry(number: int, key: str, value: bytes) -> bytes:
    """One map<string, V> entry; value is the already encoded value field (number 2)."""
    return raw(number, text(1, key) + value)


def envelope(api_version: str, kind: str, obj: bytes) -> bytes:
    type_meta = text(1, api_version) + text(2, kind)
    return b"k8s\x00" + raw(1, type_meta) + raw(2, obj) + text(3, "") + text(4, "")


def meta(name: str, *extra: bytes) -> bytes:
    return raw(1, text(1, name) + raw(8, b"") + b"".join(extra))


# --- the kubectl oracle ------------------------------------------------------------------------

KUBECTL_COMMANDS = [
    ["create", "namespace", "kt-ns"],
    ["create", "configmap", "kt-cm", "--from-literal=a=b", "--from-literal=c=d"],
    ["create", "configmap", "kt-bin", "--from-file=blob={binary_file}"],
    [
        "create",
        "deployment",
        "kt-dep",
        "--image=localhost/keelson/busybox:1",
        "--replicas=3",
        "--port=80",
    ],
    ["create", "deployment", "kt-zero", "--image=localhost/keelson/busybox:1", "--replicas=0"],
    ["create", "service", "clusterip", "kt-svc", "--tcp=80:8080"],
    ["create", "service", "clusterip", "kt-named", "--tcp=80:http", "--tcp=443:8443"],
    ["create", "service", "clusterip", "kt-headless", "--clusterip=None"],
    ["create", "service", "nodeport", "kt-np", "--tcp=80:8080"],
    ["create", "secret", "generic", "kt-sec", "--from-literal=a=b",
     "--from-file=blob={binary_file}"],
    [
        "create",
        "secret",
        "docker-registry",
        "kt-reg",
        "--docker-server=registry.example",
        "--docker-username=me",
        "--docker-password=pw",
    ],
    ["create", "serviceaccount", "kt-sa"],
]


# What the stub serves for GETs: just enough discovery for kubectl's resource lookups, and the
# Pod that `kubectl debug --copy-to` copies.
DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["create", "get", "list", "watch", "delete"],
            }
        ],
    },
}


@pytest.fixture
async def recording_server() -> Any:
    """Plain-HTTP loopback stub: records POST bodies and answers 201."""
    bodies: list[tuple[str, bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        if request.method == "POST":
            bodies.append((request.content_type, await request.read()))
            # any object will do: kubectl only prints its name
            return web.json_response(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "recorded"}},
                status=201,
            )
        if request.method == "GET" and request.path in DISCOVERY:
            return web.json_response(DISCOVERY[request.path])
        if request.method == "GET" and request.path == "/api/v1/namespaces/default/pods/src":
            return web.json_response(SOURCE_POD)
        return web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
            },
            status=404,
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", bodies
    finally:
        await runner.cleanup()


async def kubectl(server: str, *args: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        f"--server={server}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    return stdout


@pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl is installed by the project set-up")
@pytest.mark.parametrize("command", KUBECTL_COMMANDS, ids=lambda c: " ".join(c[:4]))
async def test_kubectl_protobuf_body_decodes_to_kubectls_own_json(
    recording_server, command, tmp_path
):
    server, bodies = recording_server
    binary_file = tmp_path / "blob"
    binary_file.write_bytes(bytes(range(256)) * 4)  # not UTF-8: kubectl puts it in binaryData
    command = [arg.format(binary_file=binary_file) for arg in command]
    await kubectl(server, *command)
    expected = json.loads(await kubectl(server, *command, "--dry-run=client", "-o", "json"))

    assert len(bodies) == 1
    content_type, body = bodies[0]
    assert content_type == "application/vnd.kubernetes.protobuf"
    assert decode_object(body) == expected


@pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl is installed by the project set-up")
async def test_kubectl_debug_copy_of_a_rich_pod_round_trips(recording_server):
    """kubectl reads SOURCE_POD as JSON and POSTs its copy as protobuf: nearly every PodSpec
    field crosses the wire, so a wrong number or type anywhere in the table shows up here."""
    server, bodies = recording_server
    await kubectl(
        server,
        "debug",
        "src",
        "--copy-to=dst",
        "--keep-labels",
        "--keep-annotations",
        "--keep-liveness",
        "--keep-readiness",
        "--keep-startup",
        "--same-node",
        "--share-processes=false",
        "--set-image=app=localhost/keelson/busybox:1",
    )

    expected = copy.deepcopy(SOURCE_POD)
    expected["metadata"]["name"] = "dst"  # the two changes kubectl debug makes to the copy
    expected["spec"]["shareProcessNamespace"] = False
    expected["status"] = {}  # a Go struct: always encoded
    assert len(bodies) == 1
    assert decode_object(bodies[0][1]) == expected


# --- hand-built messages -----------------------------------------------------------------------


def test_pod_with_negative_packed_and_pointer_zero_values():
    container = (
        text(1, "app")
        + text(2, "localhost/keelson/busybox:1")
        + text(3, "sleep")
        + text(3, "3600")  # repeated string
        + raw(8, entry(1, "cpu", raw(2, text(1, "500m"))))  # limits: map<_, Quantity>
        + raw(
            10,
            raw(1, raw(2, text(1, "/healthz") + raw(2, num(1, 1) + text(3, "http")))) + num(3, 0),
        )  # livenessProbe, inline handler
        + raw(15, num(4, 0) + num(5, 1))  # runAsUser=0 (ptr), nonRoot
    )
    volume = text(1, "cfg") + raw(2, raw(19, raw(1, text(1, "my-cm")) + num(3, 0o644)))
    spec = (
        raw(1, volume)
        + raw(2, container)
        + text(3, "Never")
        + num(4, 0)  # terminationGrace 0 (ptr)
        + raw(14, num(2, -5 & (1 << 64) - 1) + raw(4, varint(1) + varint(2) + varint(3)))
        + num(11, 0)
        + text(6, "")
    )  # zero non-pointers dropped
    body = envelope("v1", "Pod", meta("kt-pod") + raw(2, spec) + raw(3, b""))

    assert decode_object(body) == {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "kt-pod"},
        "spec": {
            "volumes": [{"name": "cfg", "configMap": {"name": "my-cm", "defaultMode": 420}}],
            "containers": [
                {
                    "name": "app",
                    "image": "localhost/keelson/busybox:1",
                    "command": ["sleep", "3600"],
                    "resources": {"limits": {"cpu": "500m"}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                    "securityContext": {"runAsUser": 0, "runAsNonRoot": True},
                }
            ],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsUser": -5, "supplementalGroups": [1, 2, 3]},
        },
        "status": {},
    }


def test_negative_int32_sent_as_ten_byte_varint():
    terminated = raw(3, num(1, -1) + raw(5, b""))
    status = raw(
        8,
        text(1, "app") + raw(2, terminated) + num(4, 0) + num(5, 0) + text(6, "img") + text(7, ""),
    )
    body = envelope("v1", "Pod", meta("kt-pod") + raw(3, status))

    container_status = decode_object(body)["status"]["containerStatuses"][0]
    assert container_status == {
        "name": "app",
        "state": {"terminated": {"exitCode": -1, "startedAt": None}},
        "ready": False,
        "restartCount": 0,
        "image": "img",
        "imageID": "",
    }


def test_lease_times_and_pointer_zero():
    spec = (
        text(1, "node-a")
        + num(2, 40)
        + raw(3, num(1, 1767323045) + num(2, 123456789))
        + raw(4, num(1, 1767323046))
        + num(5, 0)
    )
    body = envelope("coordination.k8s.io/v1", "Lease", meta("kt-lease") + raw(2, spec))

    assert decode_object(body)["spec"] == {
        "holderIdentity": "node-a",
        "leaseDurationSeconds": 40,
        "acquireTime": "2026-01-02T03:04:05.123456Z",
        "renewTime": "2026-01-02T03:04:06.000000Z",
        "leaseTransitions": 0,
    }


def test_time_drops_nanoseconds_and_managed_fields_keep_raw_json():
    managed = (
        text(1, "kubectl")
        + text(2, "Update")
        + text(3, "v1")
        + raw(4, num(1, 1767323045) + num(2, 999))
        + text(6, "FieldsV1")
        + raw(7, raw(1, b'{"f:data":{".":{}}}'))
        + text(8, "")
    )
    body = envelope("v1", "ConfigMap", meta("kt-cm", raw(17, managed)))

    assert decode_object(body)["metadata"]["managedFields"] == [
        {
            "manager": "kubectl",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2026-01-02T03:04:05Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {".": {}}},
        }
    ]


def test_token_request_as_kubectl_create_token_sends_it():
    """TokenRequest's BoundObjectReference calls its uid field ``uID`` in the .proto."""
    bound = text(1, "Pod") + text(2, "v1") + text(3, "web") + text(4, "1234")
    spec = text(1, "https://kubernetes.default.svc") + raw(3, bound) + num(4, 600)
    body = envelope("authentication.k8s.io/v1", "TokenRequest",
                    raw(1, raw(8, b"")) + raw(2, spec) + raw(3, b""))
    assert decode_object(body) == {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {},
        "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 600,
                 "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web",
                                    "uid": "1234"}},
        "status": {},
    }


def test_endpointslice_conditions_false_are_kept():
    endpoint = text(1, "10.244.0.5") + raw(2, num(1, 0) + num(2, 1) + num(3, 0)) + text(6, "n1")
    port = text(1, "") + text(2, "TCP") + num(3, 8080)
    body = envelope(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        meta("kt-es") + text(4, "IPv4") + raw(2, endpoint) + raw(3, port),
    )

    obj = decode_object(body)
    assert obj["endpoints"] == [
        {
            "addresses": ["10.244.0.5"],
            "nodeName": "n1",
            "conditions": {"ready": False, "serving": True, "terminating": False},
        }
    ]
    assert obj["ports"] == [{"name": "", "protocol": "TCP", "port": 8080}]


def test_delete_options_in_any_group_version():
    body = envelope(
        "apps/v1",
        "DeleteOptions",
        num(1, 0) + text(4, "Foreground") + raw(2, text(1, "uid-1")) + text(5, "All"),
    )

    assert decode_object(body) == {
        "kind": "DeleteOptions",
        "apiVersion": "apps/v1",
        "gracePeriodSeconds": 0,
        "propagationPolicy": "Foreground",
        "preconditions": {"uid": "uid-1"},
        "dryRun": ["All"],
    }


def test_scale_keeps_required_zero_status_replicas():
    body = envelope(
        "autoscaling/v1",
        "Scale",
        meta("kt-dep") + raw(2, num(1, 0)) + raw(3, num(1, 0) + text(2, "")),
    )

    assert decode_object(body) == {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": "kt-dep"},
        "spec": {},
        "status": {"replicas": 0},
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"kind": "Namespace"}', "k8s\\x00 prefix"),
        (envelope("v1", "Namespace", meta("x") + num(99, 1)), "field number 99"),
        (envelope("v1", "Namespace", meta("x", num(42, 7))), "metadata: field number 42"),
        (envelope("v1", "PersistentVolume", meta("x")), "kind 'PersistentVolume'"),
        (envelope("v1", "Namespace", meta("x"))[:-9], "claims"),
        (envelope("v1", "Namespace", raw(1, raw(1, b"\xff\xfe"))), "not valid UTF-8"),
        (envelope("v1", "Namespace", num(1, 5)), "wire type 0"),
        (
            envelope("apps/v1", "Deployment", raw(2, raw(4, raw(2, raw(1, num(1, 7)))))),
            "IntOrString type 7",
        ),
        (b"k8s\x00" + raw(2, meta("x")), "apiVersion and kind"),
        (b"k8s\x00\x0a" + b"\xff" * 10 + b"\x01", "overlong varint"),
        (envelope("v1", "Namespace", varint(1 << 3 | 3)), "unsupported wire type 3"),
    ],
)
def test_malformed_bodies_raise_protobuf_error_with_a_reason(body, message):
    with pytest.raises(ProtobufError, match=message.replace("\\", "\\\\")):
        decode_object(body)


def test_fixed_width_wire_values():
    message = (
        varint(1 << 3 | 1) + struct.pack("<d", -2.5) + varint(2 << 3 | 5) + struct.pack("<f", 0.5)
    )
    fields = list(iter_fields(message))

    assert [(number, wire_type) for number, wire_type, _ in fields] == [(1, 1), (2, 5)]
    assert unpack_fixed("double", fields[0][2]) == -2.5
    assert unpack_fixed("float", fields[1][2]) == 0.5


@pytest.mark.parametrize(
    ("nanoseconds", "expected"),
    [
        (0, "0s"),
        (1500, "1.5µs"),
        (2_000_000, "2ms"),
        (90 * 10**9, "1m30s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (-(10**9), "-1s"),
    ],
)
def test_go_duration_format(nanoseconds, expected):
    assert go_duration(nanoseconds) == expected


# --- the generated table and its generator ----------------------------------------------------


def test_field_table_is_closed_over_its_types():
    table = json.loads(FIELDS_FILE.read_text())
    messages = table["messages"]
    scalars = {
        "string",
        "bytes",
        "bool",
        "int32",
        "int64",
        "uint32",
        "uint64",
        "double",
        "float",
        "sint32",
        "sint64",
        "fixed32",
        "fixed64",
        "sfixed32",
        "sfixed64",
    }
    for root in table["kinds"].values():
        assert root in messages
    for fields in messages.values():
        for _, type_name, _, _ in fields.values():
            assert type_name in scalars or type_name in messages or type_name in SPECIAL


def _generator() -> Any:
    path = REPO / "tools" / "gen_protobuf.py"
    spec = importlib.util.spec_from_file_location("gen_protobuf", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  (dataclasses look it up)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_generator_reads_upstream_proto_syntax():
    upstream = """
syntax = "proto2";
package k8s.io.api.core.v1;
import "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto";
option go_package = "k8s.io/api/core/v1";
/* licence */
// ConfigMap holds configuration data for pods to consume.
message ConfigMap {
  // Standard object's metadata.
  // +optional
  optional .k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;

  // +optional
  map<string, bytes> binaryData = 3;

  optional string required = 5;
}
"""
    messages = _generator().parse_proto(upstream)
    fields = {field.number: field for field in messages["core.v1.ConfigMap"]}
    assert (fields[1].name, fields[1].type, fields[1].optional) == (
        "metadata",
        "apis.meta.v1.ObjectMeta",
        True,
    )
    assert (fields[3].label, fields[3].type) == ("map", "bytes")
    assert fields[5].optional is False


# A Pod in the shape Go's JSON encoder gives it (no empty strings, structs always present),
# using most PodSpec and Container fields, several volume kinds, pointers set to zero/false,
# a negative int64 and an int64 beyond 32 bits.
SOURCE_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "src",
        "namespace": "default",
        "labels": {"app": "kt"},
        "annotations": {"a": "b"},
    },
    "spec": {
        "volumes": [
            {
                "name": "cm",
                "configMap": {
                    "name": "my-cm",
                    "items": [{"key": "k", "path": "p", "mode": 256}],
                    "defaultMode": 420,
                    "optional": False,
                },
            },
            {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0, "optional": True}},
            {"name": "ed", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "hp", "hostPath": {"path": "/var/log", "type": "Directory"}},
            {
                "name": "dapi",
                "downwardAPI": {
                    "items": [
                        {
                            "path": "labels",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"},
                        },
                        {
                            "path": "cpu",
                            "resourceFieldRef": {
                                "containerName": "app",
                                "resource": "limits.cpu",
                                "divisor": "1m",
                            },
                        },
                    ],
                },
            },
            {
                "name": "proj",
                "projected": {
                    "defaultMode": 292,
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "audience": "api",
                                "expirationSeconds": 3600,
                                "path": "token",
                            },
                        },
                        {"configMap": {"name": "c2", "optional": True}},
                        {"secret": {"name": "s2"}},
                        {
                            "clusterTrustBundle": {
                                "signerName": "x.io/y",
                                "labelSelector": {"matchLabels": {"a": "b"}},
                                "optional": True,
                                "path": "ca.pem",
                            },
                        },
                    ],
                },
            },
            {"name": "pvc", "persistentVolumeClaim": {"claimName": "claim", "readOnly": True}},
            {
                "name": "eph",
                "ephemeral": {
                    "volumeClaimTemplate": {
                        "metadata": {"labels": {"t": "1"}},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "storageClassName": "",
                            "volumeMode": "Filesystem",
                            "resources": {"requests": {"storage": "1Gi"}},
                            "selector": {
                                "matchExpressions": [
                                    {"key": "k", "operator": "In", "values": ["a", "b"]},
                                ],
                            },
                            "dataSourceRef": {
                                "apiGroup": "snapshot.storage.k8s.io",
                                "kind": "VolumeSnapshot",
                                "name": "snap",
                            },
                        },
                    },
                },
            },
            {"name": "nfs", "nfs": {"server": "nfs.invalid", "path": "/x", "readOnly": True}},
            {
                "name": "csi",
                "csi": {
                    "driver": "d.io",
                    "readOnly": False,
                    "volumeAttributes": {"k": "v"},
                    "nodePublishSecretRef": {"name": "n"},
                },
            },
            {
                "name": "img",
                "image": {
                    "reference": "localhost/keelson/busybox:1",
                    "pullPolicy": "IfNotPresent",
                },
            },
            {
                "name": "iscsi",
                "iscsi": {
                    "targetPortal": "t:3260",
                    "iqn": "iqn.x",
                    "lun": 0,
                    "portals": ["a", "b"],
                    "chapAuthSession": True,
                    "initiatorName": "init",
                    "secretRef": {"name": "chap"},
                },
            },
        ],
        "initContainers": [
            {
                "name": "init",
                "image": "localhost/keelson/busybox:1",
                "command": ["true"],
                "restartPolicy": "Always",
                "startupProbe": {"exec": {"command": ["true"]}, "failureThreshold": 30},
                "resources": {},
            },
        ],
        "containers": [
            {
                "name": "app",
                "image": "localhost/keelson/busybox:1",
                "command": ["sh", "-c"],
                "args": ["sleep 3600"],
                "workingDir": "/tmp",
                "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {
                        "containerPort": 53,
                        "protocol": "UDP",
                        "hostPort": 5353,
                        "hostIP": "127.0.0.1",
                    },
                ],
                "envFrom": [
                    {"prefix": "P_", "configMapRef": {"name": "env-cm", "optional": True}},
                    {"secretRef": {"name": "env-s"}},
                ],
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "E"},
                    {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {
                        "name": "C",
                        "valueFrom": {
                            "configMapKeyRef": {"name": "cm", "key": "k", "optional": False},
                        },
                    },
                    {"name": "D", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    {
                        "name": "F",
                        "valueFrom": {
                            "resourceFieldRef": {
                                "resource": "requests.memory",
                                "divisor": "1Mi",
                            },
                        },
                    },
                ],
                "resources": {
                    "limits": {"cpu": "500m", "memory": "128Mi"},
                    "requests": {"cpu": "100m", "memory": "64Mi", "ephemeral-storage": "1Gi"},
                },
                "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
                "volumeMounts": [
                    {"name": "cm", "mountPath": "/etc/cm", "readOnly": True, "subPath": "x"},
                    {
                        "name": "ed",
                        "mountPath": "/cache",
                        "mountPropagation": "None",
                        "subPathExpr": "$(A)",
                    },
                ],
                "volumeDevices": [{"name": "pvc", "devicePath": "/dev/xvda"}],
                "livenessProbe": {
                    "httpGet": {
                        "path": "/healthz",
                        "port": "http",
                        "host": "localhost",
                        "scheme": "HTTP",
                        "httpHeaders": [{"name": "X", "value": "y"}],
                    },
                    "initialDelaySeconds": 3,
                    "timeoutSeconds": 1,
                    "periodSeconds": 10,
                    "successThreshold": 1,
                    "failureThreshold": 3,
                    "terminationGracePeriodSeconds": 0,
                },
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
                "startupProbe": {"grpc": {"port": 9090, "service": ""}},
                "lifecycle": {
                    "postStart": {"exec": {"command": ["echo", "hi"]}},
                    "preStop": {"sleep": {"seconds": 5}},
                    "stopSignal": "SIGTERM",
                },
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "imagePullPolicy": "Never",
                "securityContext": {
                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                    "privileged": False,
                    "seLinuxOptions": {"level": "s0:c1"},
                    "runAsUser": 0,
                    "runAsGroup": 1000,
                    "runAsNonRoot": False,
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "procMount": "Default",
                    "seccompProfile": {"type": "RuntimeDefault"},
                    "appArmorProfile": {"type": "Localhost", "localhostProfile": "p"},
                },
                "stdin": True,
                "tty": True,
            },
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 0,
        "activeDeadlineSeconds": 600,
        "dnsPolicy": "None",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "serviceAccountName": "default",
        "automountServiceAccountToken": False,
        "nodeName": "kt-node",
        "hostNetwork": True,
        "hostPID": True,
        "securityContext": {
            "runAsUser": 1000,
            "runAsGroup": -1,
            "runAsNonRoot": True,
            "supplementalGroups": [1, 2, 4294967296],
            "fsGroup": 2000,
            "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}],
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "Localhost", "localhostProfile": "prof.json"},
            "windowsOptions": {"runAsUserName": "u", "hostProcess": False},
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "hostname": "h",
        "subdomain": "sd",
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "zone", "operator": "In", "values": ["a"]},
                            ],
                            "matchFields": [
                                {"key": "metadata.name", "operator": "NotIn", "values": ["n2"]},
                            ],
                        },
                    ],
                },
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 10,
                        "preference": {
                            "matchExpressions": [{"key": "disk", "operator": "Exists"}],
                        },
                    },
                ],
            },
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {"app": "db"}},
                        "topologyKey": "kubernetes.io/hostname",
                        "namespaces": ["other"],
                        "namespaceSelector": {},
                        "matchLabelKeys": ["pod-template-hash"],
                    },
                ],
            },
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {
                                "matchExpressions": [
                                    {"key": "app", "operator": "NotIn", "values": ["x"]},
                                ],
                            },
                            "topologyKey": "zone",
                        },
                    },
                ],
            },
        },
        "schedulerName": "default-scheduler",
        "tolerations": [
            {
                "key": "k",
                "operator": "Equal",
                "value": "v",
                "effect": "NoExecute",
                "tolerationSeconds": 0,
            },
            {"operator": "Exists"},
        ],
        "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]}],
        "priorityClassName": "high",
        "priority": 0,
        "dnsConfig": {
            "nameservers": ["127.0.0.53"],
            "searches": ["svc.local"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        },
        "readinessGates": [{"conditionType": "x.io/ready"}],
        "runtimeClassName": "rc",
        "enableServiceLinks": False,
        "preemptionPolicy": "Never",
        "overhead": {"cpu": "10m"},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "kt"}},
                "minDomains": 2,
                "nodeAffinityPolicy": "Honor",
                "nodeTaintsPolicy": "Ignore",
                "matchLabelKeys": ["rev"],
            },
        ],
        "setHostnameAsFQDN": False,
        "os": {"name": "linux"},
        "hostUsers": True,
        "schedulingGates": [{"name": "gate"}],
        "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "gpu-tmpl"}],
        "resources": {"limits": {"cpu": "1"}},
    },
}
