"""Issue 10 end to end: a pod's identity is the token the agent mounts into it.

A busybox pod in a fresh namespace gets the ``kube-api-access-*`` projected volume; the
test reads the token, CA and namespace from inside the container (``docker exec``), uses
the token against the apiserver (403 without a Role, 200 with one), lists pods with the
official client's in-cluster loader from inside the pod's network namespace through the
``kubernetes`` Service IP, and checks the token is refused (401) once the pod is deleted.
Everything is created in the test's namespace, which the cluster's teardown deletes.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import docker

from nodeagent.runtime.interface import LABEL_POD_UID, LABEL_TYPE, TYPE_CONTAINER
from tests.support.cluster import PORT

from .conftest import PYTHON, Cluster, wait_for

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_IP = "10.96.0.1"
POD = """
apiVersion: v1
kind: Pod
metadata:
  name: who
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: localhost/keelson/busybox:1
      imagePullPolicy: Never
      command: ["sleep", "3600"]
"""
# Run inside the pod's network namespace: the official client's in-cluster loader, with
# the files and environment the pod sees, lists the pods of the namespace.
IN_CLUSTER = """
import json, sys
from kubernetes import client
from kubernetes.config.incluster_config import InClusterConfigLoader
token, ca, host, port, namespace = sys.argv[1:]
configuration = client.Configuration()
InClusterConfigLoader(token_filename=token, cert_filename=ca, environ={
    "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
}).load_and_set(configuration)
print(configuration.host)
api = client.CoreV1Api(client.ApiClient(configuration))
print(json.dumps([pod.metadata.name for pod in api.list_namespaced_pod(namespace).items]))
"""


def pod_container(uid: str) -> dict[str, object]:
    """``docker inspect`` of the pod's app container, found by the agent's labels."""
    api = docker.APIClient(version="1.41", timeout=60)
    try:
        found = api.containers(filters={"label": [f"{LABEL_POD_UID}={uid}",
                                                  f"{LABEL_TYPE}={TYPE_CONTAINER}"],
                                         "status": "running"})
        assert len(found) == 1, found
        return api.inspect_container(found[0]["Id"])
    finally:
        api.close()


def docker_exec(container_id: str, *argv: str) -> str:
    result = subprocess.run(["docker", "exec", container_id, *argv], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, f"docker exec {' '.join(argv)}: {result.stderr.strip()}"
    return result.stdout


def jwt_claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def get_pods(cluster: Cluster, namespace: str, *, token: str, ca: Path) -> tuple[int, dict]:
    """``GET /api/v1/namespaces/NS/pods`` with a bearer token from beside the apiserver."""
    reply = cluster.run(
        "curl", "-sS", "--max-time", "5", "--cacert", str(ca),
        "-H", f"Authorization: Bearer {token}", "-w", "\n%{http_code}",
        f"https://127.0.0.1:{PORT}/api/v1/namespaces/{namespace}/pods", timeout=15)
    body, _, code = reply.stdout.rpartition("\n")
    return int(code), json.loads(body)


def test_a_pods_mounted_token_is_its_service_account_until_the_pod_is_deleted(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=POD)
    wait_for(lambda: cluster.get("-n", namespace, "pod", "who")["status"].get("phase")
             == "Running", timeout=60, what="pod who to be Running")
    pod = cluster.get("-n", namespace, "pod", "who")
    assert any(volume["name"].startswith("kube-api-access-")
               for volume in pod["spec"]["volumes"])
    container = pod_container(pod["metadata"]["uid"])
    container_id = str(container["Id"])

    # What the pod sees in its service account directory and environment.
    token = docker_exec(container_id, "cat", f"{SA_DIR}/token")
    assert docker_exec(container_id, "cat", f"{SA_DIR}/namespace") == namespace
    ca = tmp_path / "ca.crt"
    ca.write_text(docker_exec(container_id, "cat", f"{SA_DIR}/ca.crt"))
    token_file = tmp_path / "token"
    token_file.write_text(token)
    user = f"system:serviceaccount:{namespace}:default"
    assert jwt_claims(token)["sub"] == user
    env = dict(line.split("=", 1)
               for line in docker_exec(container_id, "env").splitlines() if "=" in line)
    assert env["KUBERNETES_SERVICE_HOST"] == SERVICE_IP
    assert env["KUBERNETES_SERVICE_PORT"] == "443"

    # The token is the ServiceAccount: nothing in RBAC for it yet, so kube's 403.
    code, status = get_pods(cluster, namespace, token=token, ca=ca)
    assert code == 403, status
    assert status["message"] == (
        f'pods is forbidden: User "{user}" cannot list resource "pods" in API group "" '
        f'in the namespace "{namespace}"')

    cluster.kubectl("-n", namespace, "create", "role", "pod-reader", "--verb=get,list",
                    "--resource=pods")
    cluster.kubectl("-n", namespace, "create", "rolebinding", "pod-reader",
                    "--role=pod-reader", f"--serviceaccount={namespace}:default")
    code, listed = get_pods(cluster, namespace, token=token, ca=ca)
    assert code == 200, listed
    assert [item["metadata"]["name"] for item in listed["items"]] == ["who"]

    # The official client's in-cluster config, from the pod's network namespace, through
    # the kubernetes Service IP (the proxy's DNAT to the apiserver's node address).
    in_pod = subprocess.run(
        ["nsenter", f"--net=/proc/{container['State']['Pid']}/ns/net", str(PYTHON), "-c",
         IN_CLUSTER, str(token_file), str(ca), env["KUBERNETES_SERVICE_HOST"],
         env["KUBERNETES_SERVICE_PORT"], namespace],
        capture_output=True, text=True, timeout=60)
    assert in_pod.returncode == 0, in_pod.stderr[-2000:]
    host, names = in_pod.stdout.splitlines()
    assert host == f"https://{SERVICE_IP}:443"
    assert json.loads(names) == ["who"]

    # A bound token ends with its pod.
    cluster.kubectl("-n", namespace, "delete", "pod", "who", "--wait=true", timeout=60)
    assert not cluster.get("-n", namespace, "pods")["items"]
    code, status = get_pods(cluster, namespace, token=token, ca=ca)
    assert code == 401, status
    assert status["reason"] == "Unauthorized"
