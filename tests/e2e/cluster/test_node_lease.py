"""Issue 5: a node whose agent stops renewing its Lease goes NotReady, and its pods leave
the Service; when the agent comes back, so does the node.

A real ``keelson apiserver`` (node lifecycle grace 4 s) and a real ``keelson agent`` run as
two processes (see lease_support). Freezing the agent with SIGSTOP stops its heartbeat while
its containers keep running, exactly what a hung or partitioned kubelet looks like; the
assertions are what ``kubectl get`` shows a user.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .lease_support import GRACE_SECONDS, LeaseCluster, condition, lease_cluster, wait_for

APP = "web"
UNREACHABLE = "node.kubernetes.io/unreachable"


def manifest(*, replicas: int) -> str:
    """Busybox httpd pods behind a Service, Ready once httpd answers the probe."""
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": APP},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "httpd", "image": "localhost/keelson/busybox:1",
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c"],
                        "args": ["mkdir -p /www && hostname > /www/index.html"
                                 ' && httpd -f -p 8080 -h /www & trap "kill $!; exit 0" TERM;'
                                 " wait"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                           "periodSeconds": 1},
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


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LeaseCluster]:
    """Shadows the module-wide ``keelson up`` cluster: this test needs its own processes."""
    with lease_cluster(tmp_path) as running:
        yield running


def pods_ready(cluster: LeaseCluster, namespace: str) -> dict[str, str]:
    """Each app pod's Ready condition status ("True", "False", or "" when absent)."""
    items = cluster.get("-n", namespace, "pods", "-l", f"app={APP}")["items"]
    return {pod["metadata"]["name"]: condition(pod, "Ready").get("status", "")
            for pod in items}


def endpoints_ready(cluster: LeaseCluster, namespace: str) -> dict[str, bool]:
    """Pod name -> the Service's EndpointSlice ``ready`` condition for it."""
    slices = cluster.get("-n", namespace, "endpointslices",
                         "-l", f"kubernetes.io/service-name={APP}")["items"]
    return {endpoint["targetRef"]["name"]: bool(endpoint.get("conditions", {}).get("ready"))
            for item in slices for endpoint in item.get("endpoints") or []}


def unreachable_taints(node: dict) -> set[str]:
    return {taint["effect"] for taint in (node.get("spec") or {}).get("taints") or []
            if taint["key"] == UNREACHABLE}


def test_stopping_the_agent_lease_marks_node_not_ready_and_endpoints_not_ready(
        cluster: LeaseCluster) -> None:
    namespace = f"kt-{secrets.token_hex(4)}"
    cluster.namespaces.append(namespace)
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=manifest(replicas=2))
    cluster.kubectl("-n", namespace, "rollout", "status", f"deployment/{APP}",
                    "--timeout=60s", timeout=70)

    def serving() -> dict[str, bool] | None:
        pods, endpoints = pods_ready(cluster, namespace), endpoints_ready(cluster, namespace)
        ok = (len(pods) == 2 and set(pods.values()) == {"True"}
              and endpoints == dict.fromkeys(pods, True))
        return endpoints if ok else None
    pods = set(wait_for(serving, timeout=30, what="2 Ready pods behind ready endpoints"))
    assert cluster.node_ready() and not unreachable_taints(cluster.node())

    cluster.freeze_agent()
    frozen_at = time.monotonic()

    def node_unreachable() -> dict | None:
        node = cluster.node()
        ready = condition(node, "Ready")
        ok = ((ready.get("status"), ready.get("reason")) == ("Unknown", "NodeStatusUnknown")
              and unreachable_taints(node) == {"NoSchedule", "NoExecute"})
        return node if ok else None
    node = wait_for(node_unreachable, timeout=GRACE_SECONDS + 10,
                    what="the silent node to be Unknown and tainted unreachable")
    assert time.monotonic() - frozen_at >= GRACE_SECONDS - 1  # not before the grace period
    assert condition(node, "Ready")["message"] == "Kubelet stopped posting node status."
    table = cluster.kubectl("get", "node", cluster.node_name, "--no-headers").stdout
    assert table.split()[:2] == [cluster.node_name, "NotReady"]

    def out_of_service() -> bool:
        return (pods_ready(cluster, namespace) == dict.fromkeys(pods, "False")
                and endpoints_ready(cluster, namespace) == dict.fromkeys(pods, False))
    wait_for(out_of_service, timeout=10,
             what="the node's pods to be NotReady and their endpoints not ready")

    cluster.thaw_agent()
    thawed_at = time.monotonic()

    def recovered() -> bool:
        node = cluster.node()
        return (condition(node, "Ready").get("status") == "True"
                and not unreachable_taints(node))
    wait_for(recovered, timeout=15, what="the node to be Ready again without taints")
    print(f"recovered {time.monotonic() - thawed_at:.1f}s after SIGCONT")
    ready = condition(cluster.node(), "Ready")
    assert (ready["reason"], ready["message"]) == ("KubeletReady",
                                                   "kubelet is posting ready status")
    # the agent reconciles its pods' status with the server's (which the lifecycle
    # controller changed): the pods and their endpoints are ready again
    wait_for(serving, timeout=30, what="the pods and their endpoints to be ready again")
