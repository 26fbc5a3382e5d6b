"""The real ``kubectl`` binary against a real ``keelson apiserver``: what a user types.

Output is checked the way a person reads it: headers and columns of ``kubectl get``,
the "created / unchanged / configured" lines of ``kubectl apply``, the strict-decoding
error of ``kubectl create``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.support.apiserver import KUBECTL, ApiServer

MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: kt-config
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: kt-web
  labels: {app: kt-web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: kt-web}
  template:
    metadata:
      labels: {app: kt-web}
    spec:
      containers:
      - name: web
        image: localhost/keelson/busybox:1
        command: [httpd, -f, -p, "8080"]
        env:
        - {name: FIRST, value: "1"}
        - {name: SECOND, value: "2"}
        - {name: THIRD, value: "3"}
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: kt-web
spec:
  selector: {app: kt-web}
  ports:
  - port: 80
    targetPort: 8080
"""


def header(output: str) -> list[str]:
    return output.splitlines()[0].split()


def test_apply_twice_then_change(apiserver: ApiServer, namespace: str) -> None:
    first = apiserver.kubectl("apply", "-n", namespace, "-f", "-", input=MANIFEST).stdout
    assert first.splitlines() == ["configmap/kt-config created",
                                  "deployment.apps/kt-web created", "service/kt-web created"]
    second = apiserver.kubectl("apply", "-n", namespace, "-f", "-", input=MANIFEST).stdout
    assert second.splitlines() == ["configmap/kt-config unchanged",
                                   "deployment.apps/kt-web unchanged",
                                   "service/kt-web unchanged"]

    changed = MANIFEST.replace('        - {name: SECOND, value: "2"}\n', "") \
        .replace("replicas: 2", "replicas: 3")
    third = apiserver.kubectl("apply", "-n", namespace, "-f", "-", input=changed).stdout
    assert third.splitlines() == ["configmap/kt-config unchanged",
                                  "deployment.apps/kt-web configured",
                                  "service/kt-web unchanged"]
    deployment = json.loads(apiserver.kubectl("get", "-n", namespace, "deployment", "kt-web",
                                              "-o", "json").stdout)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert [e["name"] for e in container["env"]] == ["FIRST", "THIRD"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["generation"] == 2


EVERY_KIND = """\
apiVersion: v1
kind: Service
metadata: {name: kt-h}
spec:
  clusterIP: None
  selector: {app: x}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: kt-p}
spec:
  containers:
  - name: c
    image: localhost/keelson/busybox:1
    resources: {limits: {cpu: 500m, memory: 1Gi}}
    livenessProbe: {httpGet: {port: 80}}
  volumes: [{name: v, emptyDir: {}}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: kt-rs}
spec:
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec: {containers: [{name: c, image: localhost/keelson/busybox:1}]}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: kt-l}
spec: {holderIdentity: me, leaseDurationSeconds: 10}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: kt-es, labels: {kubernetes.io/service-name: kt-h}}
addressType: IPv4
endpoints: [{addresses: [10.244.0.9], conditions: {ready: true}}]
ports: [{name: "", port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: kt-h}
subsets: [{addresses: [{ip: 10.244.0.9}], ports: [{port: 80}]}]
"""


def test_apply_twice_every_kind_is_unchanged(apiserver: ApiServer, namespace: str) -> None:
    first = apiserver.kubectl("apply", "-n", namespace, "-f", "-", input=EVERY_KIND).stdout
    assert [line.split()[-1] for line in first.splitlines()] == ["created"] * 6
    second = apiserver.kubectl("apply", "-n", namespace, "-f", "-", input=EVERY_KIND).stdout
    assert [line.split()[-1] for line in second.splitlines()] == ["unchanged"] * 6, second
    pod = json.loads(apiserver.kubectl("get", "-n", namespace, "pod", "kt-p", "-o",
                                       "json").stdout)
    # Defaulted like Kubernetes: a limit without a request is also the request.
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "500m",
                                                                     "memory": "1Gi"}
    assert pod["status"]["qosClass"] == "Guaranteed"


def test_get_wide_columns(apiserver: ApiServer, namespace: str) -> None:
    apiserver.kubectl("apply", "-n", namespace, "-f", "-", input=MANIFEST)
    apiserver.kubectl("apply", "-n", namespace, "-f", "-", input=f"""\
apiVersion: v1
kind: Pod
metadata: {{name: kt-pod}}
spec:
  nodeName: kt-node-a
  containers: [{{name: c, image: localhost/keelson/busybox:1}}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: kt-rs}}
spec:
  selector: {{matchLabels: {{app: kt-rs}}}}
  template:
    metadata: {{labels: {{app: kt-rs}}}}
    spec: {{containers: [{{name: c, image: localhost/keelson/busybox:1}}]}}
---
apiVersion: v1
kind: Endpoints
metadata: {{name: kt-web}}
subsets: [{{addresses: [{{ip: 10.244.0.7}}], ports: [{{port: 8080}}]}}]
---
apiVersion: v1
kind: Event
metadata: {{name: kt-event}}
involvedObject: {{kind: Pod, name: kt-pod, namespace: {namespace}}}
reason: Tested
message: hello from the test
type: Normal
""")
    apiserver.kubectl("create", "-f", "-", input="""\
apiVersion: v1
kind: Node
metadata: {name: kt-node-wide}
""", check=False)

    def wide(*what: str) -> str:
        return apiserver.kubectl("get", *what, "-o", "wide").stdout

    pods = wide("-n", namespace, "pods")
    assert header(pods)[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    row = pods.splitlines()[1].split()
    assert row[:4] == ["kt-pod", "0/1", "Pending", "0"] and "kt-node-a" in row

    assert header(wide("nodes"))[:6] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION",
                                         "INTERNAL-IP"]
    services = wide("-n", namespace, "services")
    assert header(services) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE",
                                "SELECTOR"]
    assert "80/TCP" in services and "app=kt-web" in services
    assert header(wide("-n", namespace, "deployments")) == [
        "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert header(wide("-n", namespace, "replicasets")) == [
        "NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    endpoints = wide("-n", namespace, "endpoints")
    assert header(endpoints) == ["NAME", "ENDPOINTS", "AGE"]
    assert "10.244.0.7:8080" in endpoints
    events = wide("-n", namespace, "events")
    assert header(events)[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    assert "hello from the test" in events
    assert header(wide("namespaces")) == ["NAME", "STATUS", "AGE"]
    apiserver.kubectl("delete", "node", "kt-node-wide")


def test_label_annotate_scale_delete_by_label(apiserver: ApiServer, namespace: str) -> None:
    apiserver.kubectl("apply", "-n", namespace, "-f", "-", input=MANIFEST)
    assert "labeled" in apiserver.kubectl("label", "-n", namespace, "configmap", "kt-config",
                                          "tier=kt").stdout
    assert "annotated" in apiserver.kubectl("annotate", "-n", namespace, "configmap",
                                            "kt-config", "kt/note=hi").stdout
    config = json.loads(apiserver.kubectl("get", "-n", namespace, "configmap", "kt-config",
                                          "-o", "json").stdout)
    assert config["metadata"]["labels"] == {"tier": "kt"}
    assert config["metadata"]["annotations"]["kt/note"] == "hi"

    assert "scaled" in apiserver.kubectl("scale", "-n", namespace, "deployment", "kt-web",
                                         "--replicas=5").stdout
    replicas = apiserver.kubectl("get", "-n", namespace, "deployment", "kt-web", "-o",
                                 "jsonpath={.spec.replicas}").stdout
    assert replicas == "5"

    deleted = apiserver.kubectl("delete", "-n", namespace, "configmap,deployment,service",
                                "-l", "tier=kt").stdout
    assert deleted.strip().startswith('configmap "kt-config" deleted')
    assert "deployment" not in deleted
    left = apiserver.kubectl("get", "-n", namespace, "configmaps", "-o", "name").stdout
    assert "kt-config" not in left


def test_get_watch_sees_a_change(apiserver: ApiServer, namespace: str) -> None:
    watcher = subprocess.Popen(
        [str(KUBECTL), "--kubeconfig", str(apiserver.kubeconfig), "get", "-n", namespace,
         "configmaps", "-w", "--output-watch-events"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # kubectl lists, then starts watching from the list's version
        apiserver.kubectl("create", "-n", namespace, "-f", "-", input="""\
apiVersion: v1
kind: ConfigMap
metadata: {name: kt-watched}
""")
        deadline = time.monotonic() + 10
        lines: list[str] = []
        assert watcher.stdout is not None
        os.set_blocking(watcher.stdout.fileno(), False)
        while time.monotonic() < deadline and not any("kt-watched" in x for x in lines):
            chunk = watcher.stdout.readline()
            if chunk:
                lines.append(chunk)
            else:
                time.sleep(0.05)
        assert any(line.split()[:2] == ["ADDED", "kt-watched"] for line in lines), lines
    finally:
        os.kill(watcher.pid, signal.SIGTERM)
        watcher.wait(timeout=10)


def test_explain_and_api_resources(apiserver: ApiServer) -> None:
    explained = apiserver.kubectl("explain", "pod.spec").stdout
    assert "KIND:" in explained and "Pod" in explained and "containers" in explained

    resources = apiserver.kubectl("api-resources").stdout
    assert header(resources) == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    rows = {line.split()[0]: line.split() for line in resources.splitlines()[1:]}
    expected = {"pods": "po", "services": "svc", "nodes": "no", "namespaces": "ns",
                "configmaps": "cm", "endpoints": "ep", "events": "ev",
                "deployments": "deploy", "replicasets": "rs"}
    for plural, short in expected.items():
        assert rows[plural][1] == short
    assert {"endpointslices", "leases"} <= set(rows)


@pytest.mark.parametrize("validate", ["strict", "true"])
def test_create_with_typo_field_is_strict_error(apiserver: ApiServer, namespace: str,
                                                validate: str) -> None:
    result = apiserver.kubectl("create", "-n", namespace, f"--validate={validate}", "-f", "-",
                               check=False, input="""\
apiVersion: v1
kind: ConfigMap
metadata: {name: kt-typo}
dataa: {a: "1"}
""")
    assert result.returncode != 0
    assert 'unknown field "dataa"' in result.stderr
    assert apiserver.kubectl("get", "-n", namespace, "configmap", "kt-typo",
                             check=False).returncode != 0


def test_apply_list_kind_validates(apiserver: ApiServer, namespace: str) -> None:
    """A ``kind: List`` makes kubectl validate against /openapi/v2 (protobuf)."""
    applied = apiserver.kubectl("apply", "-n", namespace, "-f", "-", input="""\
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: kt-l1}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: kt-l2}}
""").stdout
    assert applied.splitlines() == ["configmap/kt-l1 created", "configmap/kt-l2 created"]


def test_kubectl_create_generators_send_protobuf_and_work(apiserver: ApiServer,
                                                          namespace: str) -> None:
    """kubectl's typed commands send application/vnd.kubernetes.protobuf bodies."""
    ns = f"{namespace}-gen"
    apiserver.kubectl("create", "namespace", ns)
    apiserver.kubectl("create", "-n", ns, "configmap", "kt-generated", "--from-literal=a=1")
    apiserver.kubectl("create", "-n", ns, "deployment", "kt-dep", "--image",
                      "localhost/keelson/busybox:1", "--replicas", "2", "--port", "80")
    apiserver.kubectl("create", "-n", ns, "service", "nodeport", "kt-np", "--tcp=80:8080")
    apiserver.kubectl("expose", "-n", ns, "deployment", "kt-dep", "--port", "81",
                      "--name", "kt-exposed")
    cm = json.loads(apiserver.kubectl("get", "-n", ns, "cm", "kt-generated", "-o", "json").stdout)
    assert cm["data"] == {"a": "1"}
    dep = json.loads(apiserver.kubectl("get", "-n", ns, "deploy", "kt-dep", "-o", "json").stdout)
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}]
    svc = json.loads(apiserver.kubectl("get", "-n", ns, "svc", "kt-np", "-o", "json").stdout)
    assert svc["spec"]["type"] == "NodePort"
    assert 30000 <= svc["spec"]["ports"][0]["nodePort"] <= 32767
    exposed = json.loads(apiserver.kubectl("get", "-n", ns, "svc", "kt-exposed",
                                           "-o", "json").stdout)
    assert exposed["spec"]["selector"] == {"app": "kt-dep"}
    apiserver.kubectl("delete", "namespace", ns)
