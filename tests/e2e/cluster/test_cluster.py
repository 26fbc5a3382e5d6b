"""Issue 5 end to end: kubectl against a real ``keelson up``, pods as real containers, curl.

Every test works in its own namespace on the module's cluster (see conftest) and asserts
what a user sees: kubectl output, pod conditions, and which pods answer the Service IP.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

import pytest

from .conftest import PYTHON, Cluster, ForeignContainer, running_containers, wait_for

APP = "web"


def manifest(*, replicas: int = 3, version: str = "1") -> str:
    """A busybox httpd Deployment whose page names the pod and its version, and a Service.

    The shell stops httpd at once on SIGTERM (httpd as PID 1 would ignore it and wait for
    the grace period's SIGKILL), so termination is as abrupt as a real server's. The
    readiness probe keeps a new pod out of the Service until httpd answers; the preStop
    sleep keeps a terminating pod serving while the proxy moves traffic away (the same
    advice Kubernetes gives for zero-downtime rollouts).
    """
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": APP, "labels": {"app": APP}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": APP}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "httpd", "image": "localhost/keelson/busybox:1",
                        "imagePullPolicy": "Never",
                        "env": [{"name": "VERSION", "value": version}],
                        "command": ["sh", "-c"],
                        "args": ['mkdir -p /www && echo "$(hostname) v$VERSION" > /www/index.html'
                                 ' && httpd -f -p 8080 -h /www & trap "kill $!; exit 0" TERM;'
                                 ' wait'],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                           "periodSeconds": 1},
                        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "2"]}}},
                    }],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": APP},
        "spec": {"selector": {"app": APP},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [deployment, service]})


def deploy(cluster: Cluster, namespace: str, *, replicas: int = 3) -> str:
    """Apply the app, wait for the rollout, and return the Service's ClusterIP."""
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=manifest(replicas=replicas))
    rollout(cluster, namespace)
    return cluster.get("-n", namespace, "service", APP)["spec"]["clusterIP"]


def rollout(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("-n", namespace, "rollout", "status", f"deployment/{APP}",
                    "--timeout=60s", timeout=70)


def ready_pods(cluster: Cluster, namespace: str) -> set[str]:
    """Names of the app's pods that are Running, Ready and not terminating."""
    names = set()
    for pod in cluster.get("-n", namespace, "pods", "-l", f"app={APP}")["items"]:
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if (pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True"
                and "deletionTimestamp" not in pod["metadata"]):
            names.add(pod["metadata"]["name"])
    return names


def all_pods(cluster: Cluster, namespace: str) -> set[str]:
    items = cluster.get("-n", namespace, "pods", "-l", f"app={APP}")["items"]
    return {pod["metadata"]["name"] for pod in items}


def ready_endpoints(cluster: Cluster, namespace: str) -> set[str]:
    """Pod names behind the Service's ready addresses (EndpointSlices), as the proxy sees."""
    slices = cluster.get("-n", namespace, "endpointslices",
                         "-l", f"kubernetes.io/service-name={APP}")["items"]
    return {endpoint["targetRef"]["name"]
            for item in slices for endpoint in item.get("endpoints") or []
            if endpoint.get("conditions", {}).get("ready")}


def endpoints_addresses(cluster: Cluster, namespace: str) -> int:
    subsets = cluster.get("-n", namespace, "endpoints", APP).get("subsets") or []
    return sum(len(subset.get("addresses") or []) for subset in subsets)


def answering_pods(cluster: Cluster, ip: str, *, expected: set[str],
                   timeout: float = 20.0) -> set[str]:
    """Curl the Service until every expected pod has answered (or time runs out)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not expected <= seen and time.monotonic() < deadline:
        reply = cluster.curl(f"http://{ip}/")
        if reply.returncode == 0:
            seen.add(reply.stdout.split()[0])
    return seen


def wait_scaled(cluster: Cluster, namespace: str, count: int) -> set[str]:
    """Wait until exactly ``count`` pods exist, all Ready and all behind the Service."""
    def settled() -> set[str] | None:
        ready = ready_pods(cluster, namespace)
        if (len(ready) == count and all_pods(cluster, namespace) == ready
                and ready_endpoints(cluster, namespace) == ready
                and endpoints_addresses(cluster, namespace) == count):
            return ready
        return None
    return wait_for(settled, timeout=45, what=f"{count} ready pods behind the Service")


def test_deployment_and_service_reach_every_replica_and_follow_scale(
        cluster: Cluster, namespace: str) -> None:
    ip = deploy(cluster, namespace)
    pods = wait_scaled(cluster, namespace, 3)
    assert answering_pods(cluster, ip, expected=pods) == pods

    cluster.kubectl("-n", namespace, "scale", f"deployment/{APP}", "--replicas=5")
    pods = wait_scaled(cluster, namespace, 5)
    assert answering_pods(cluster, ip, expected=pods) == pods

    cluster.kubectl("-n", namespace, "scale", f"deployment/{APP}", "--replicas=1")
    pods = wait_scaled(cluster, namespace, 1)
    replies = {cluster.curl(f"http://{ip}/").stdout.split()[0] for _ in range(5)}
    assert replies == pods


CURL_LOOP = """
import json, signal, sys, time, urllib.request
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
ok, failures, versions = 0, [], {}
while not stop:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as reply:
            version = reply.read().decode().split()[-1]
        versions[version] = versions.get(version, 0) + 1
        ok += 1
    except Exception as exc:
        failures.append(repr(exc))
    time.sleep(0.01)
print(json.dumps({"ok": ok, "failures": failures, "versions": versions}))
"""


def test_rolling_update_loses_no_request_and_undo_restores(
        cluster: Cluster, namespace: str) -> None:
    ip = deploy(cluster, namespace)
    pods = wait_scaled(cluster, namespace, 3)
    # Ready in the API is not yet programmed in the proxy (it syncs at most once a second):
    # start counting only once the Service answers from every pod.
    assert answering_pods(cluster, ip, expected=pods) == pods
    loop = cluster.popen(str(PYTHON), "-c", CURL_LOOP, f"http://{ip}/")
    try:
        time.sleep(1)
        cluster.kubectl("-n", namespace, "set", "env", f"deployment/{APP}", "VERSION=2")
        rollout(cluster, namespace)
        wait_scaled(cluster, namespace, 3)
        time.sleep(1)
    finally:
        loop.send_signal(signal.SIGTERM)
        out, err = loop.communicate(timeout=10)
    assert out, err
    stats = json.loads(out)
    assert stats["failures"] == [], \
        f"{len(stats['failures'])} requests failed, {stats['ok']} succeeded"
    assert stats["ok"] > 50
    assert set(stats["versions"]) == {"v1", "v2"}

    def served_versions() -> set[str]:
        return {cluster.curl(f"http://{ip}/").stdout.split()[-1] for _ in range(6)}
    assert served_versions() == {"v2"}

    history = cluster.kubectl("-n", namespace, "rollout", "history", f"deployment/{APP}")
    assert "1" in history.stdout and "2" in history.stdout

    cluster.kubectl("-n", namespace, "rollout", "undo", f"deployment/{APP}")
    rollout(cluster, namespace)
    wait_scaled(cluster, namespace, 3)
    container = cluster.get("-n", namespace, "deployment", APP)[
        "spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "VERSION", "value": "1"}]
    assert served_versions() == {"v1"}
    replica_sets = cluster.get("-n", namespace, "replicasets")["items"]
    assert sorted(rs["spec"]["replicas"] for rs in replica_sets) == [0, 3]


def test_deleting_the_deployment_removes_its_pods_and_the_service_refuses(
        cluster: Cluster, namespace: str) -> None:
    ip = deploy(cluster, namespace, replicas=2)
    pods = wait_scaled(cluster, namespace, 2)
    assert answering_pods(cluster, ip, expected=pods) == pods

    cluster.kubectl("-n", namespace, "delete", "deployment", APP)
    wait_for(lambda: not cluster.get("-n", namespace, "replicasets")["items"]
             and not cluster.get("-n", namespace, "pods")["items"],
             timeout=45, what="the Deployment's ReplicaSets and pods to be gone")
    wait_for(lambda: running_containers(namespace) == 0, timeout=30,
             what="the agent to stop the deleted pods' containers")

    def refused_fast() -> bool:
        started = time.monotonic()
        reply = cluster.curl(f"http://{ip}/", timeout=3)
        return reply.returncode == 7 and time.monotonic() - started < 1.5
    # The proxy syncs at most once a second: allow it to notice the empty Service.
    wait_for(refused_fast, timeout=10, what=f"{ip}:80 to refuse connections")
    reply = cluster.curl(f"http://{ip}/", timeout=3)
    assert reply.returncode == 7, reply.stderr  # curl: 7 = couldn't connect (refused)


def unschedulable_pod(name: str, spec: dict[str, object]) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "localhost/keelson/busybox:1",
                                 "imagePullPolicy": "Never", "command": ["sleep", "3600"],
                                 **spec.pop("container", {})}], **spec},
    })


@pytest.mark.parametrize(("spec", "reason"), [
    ({"nodeSelector": {"keelson.test/missing": "yes"}},
     "didn't match Pod's node affinity/selector"),
    ({"container": {"resources": {"requests": {"cpu": "1000"}}}}, "Insufficient cpu"),
], ids=["nodeSelector", "cpu"])
def test_a_pod_that_fits_no_node_stays_pending_with_the_failing_filter(
        cluster: Cluster, namespace: str, spec: dict[str, object], reason: str) -> None:
    cluster.kubectl("-n", namespace, "apply", "-f", "-",
                    input=unschedulable_pod("stuck", dict(spec)))

    def scheduled_condition() -> dict[str, str] | None:
        status = cluster.get("-n", namespace, "pod", "stuck")["status"]
        return next((c for c in status.get("conditions", []) if c["type"] == "PodScheduled"),
                    None)
    condition = wait_for(scheduled_condition, timeout=20, what="a PodScheduled condition")
    assert (condition["status"], condition["reason"]) == ("False", "Unschedulable")
    assert reason in condition["message"] and "0/1 nodes are available" in condition["message"]

    described = cluster.kubectl("-n", namespace, "describe", "pod", "stuck").stdout
    assert "FailedScheduling" in described and reason in described
    time.sleep(2)
    pod = cluster.get("-n", namespace, "pod", "stuck")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")


def test_namespace_deletion_removes_its_workloads(cluster: Cluster, namespace: str) -> None:
    deploy(cluster, namespace, replicas=2)
    wait_scaled(cluster, namespace, 2)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")

    def gone() -> bool:
        return cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0
    wait_for(gone, timeout=60, what=f"namespace {namespace} to be deleted")
    remaining = Counter(pod["metadata"]["namespace"]
                        for pod in cluster.get("pods", "-A")["items"])
    assert remaining[namespace] == 0
    assert not cluster.get("-n", namespace, "deployments,replicasets,services")["items"]
    wait_for(lambda: running_containers(namespace) == 0, timeout=30,
             what=f"the agent to stop the containers of namespace {namespace}")


def test_starting_a_cluster_leaves_another_clusters_containers_alone(
        cluster: Cluster, foreign_container: ForeignContainer) -> None:
    """Each agent labels its containers with its own id (io.keelson.agent) and adopts or
    cleans up only those: another keelson's pod on the same dockerd survives."""
    assert foreign_container.exists()


LOGGER = """
apiVersion: v1
kind: Pod
metadata:
  name: logger
spec:
  restartPolicy: Always
  containers:
    - name: main
      image: localhost/keelson/busybox:1
      imagePullPolicy: Never
      command: ["sh", "-c", "echo started $(hostname); echo second line; sleep 2; exit 3"]
"""


def test_kubectl_logs_reads_through_the_apiserver_from_the_kubelet(cluster: Cluster,
                                                                   namespace: str) -> None:
    """`kubectl logs` goes apiserver (pods/log) -> kubelet API (client certificate) ->
    Docker; `--previous` reads the instance before the last restart."""
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=LOGGER)

    def logged() -> str:
        out = cluster.kubectl("-n", namespace, "logs", "logger", check=False)
        return out.stdout if out.returncode == 0 and "second line" in out.stdout else ""
    text = wait_for(logged, timeout=60, what="the logger pod's output")
    assert text.splitlines()[:2] == ["started logger", "second line"]
    tail = cluster.kubectl("-n", namespace, "logs", "logger", "--tail=1").stdout
    assert tail.strip() in ("second line", "started logger")

    def restarted() -> bool:
        statuses = cluster.get("-n", namespace, "pod", "logger")["status"].get(
            "containerStatuses") or [{}]
        return statuses[0].get("restartCount", 0) >= 1
    wait_for(restarted, timeout=60, what="the logger container to restart")
    previous = cluster.kubectl("-n", namespace, "logs", "logger", "--previous").stdout
    assert "started logger" in previous
