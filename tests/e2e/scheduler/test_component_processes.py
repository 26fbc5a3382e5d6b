"""``keelson scheduler`` and ``keelson controller-manager`` as processes of their own.

The control-plane components are API clients first (ARCHITECTURE.md): an apiserver
started with ``--disable-controllers`` runs no loop at all, and a Deployment comes to
life only once the two separate processes, each with nothing but a kubeconfig, are
running next to it — the way kube-scheduler and kube-controller-manager run.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from apiclient.client import ApiClient
from apiclient.resources import DEPLOYMENTS, PODS, REPLICASETS
from tests.support.apiserver import KEELSON, ApiServer, stop_process

from .conftest import NAMESPACE, create_node, eventually


@contextlib.contextmanager
def component(command: str, server: ApiServer, log: Path) -> Iterator[subprocess.Popen]:
    """One ``keelson <command> --kubeconfig`` process, ended by PID on exit."""
    with open(log, "ab") as out:
        process = subprocess.Popen([str(KEELSON), command, "--kubeconfig",
                                    str(server.kubeconfig)], stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process)


def deployment(name: str, replicas: int) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "main",
                                                       "image": "localhost/keelson/busybox:1"}]}}},
    }


async def test_a_deployment_needs_both_component_processes(
        apiserver: ApiServer, client: ApiClient, tmp_path: Path) -> None:
    await create_node(client, "kt-node")
    await client.create(DEPLOYMENTS, deployment("kt-web", 2), namespace=NAMESPACE)

    async def replicasets() -> list[dict]:
        return (await client.list(REPLICASETS, namespace=NAMESPACE))["items"]

    async def bound_pods() -> list[str] | None:
        pods = (await client.list(PODS, namespace=NAMESPACE))["items"]
        nodes = [pod["spec"].get("nodeName") for pod in pods]
        return nodes if len(nodes) == 2 and all(nodes) else None

    with component("controller-manager", apiserver, tmp_path / "cm.log") as manager:
        await eventually(replicasets, timeout=20, what="the ReplicaSet of the Deployment")

        async def two_pending_pods() -> bool:
            pods = (await client.list(PODS, namespace=NAMESPACE))["items"]
            return len(pods) == 2
        await eventually(two_pending_pods, timeout=20, what="two pods from the ReplicaSet")
        # No scheduler yet: the pods stay unbound.
        assert await bound_pods() is None
        with component("scheduler", apiserver, tmp_path / "sched.log") as sched:
            nodes = await eventually(bound_pods, timeout=20, what="both pods bound")
            assert sched.poll() is None and manager.poll() is None
    assert nodes == ["kt-node", "kt-node"]
    # SIGTERM is a clean shutdown: exit code 0.
    assert (sched.returncode, manager.returncode) == (0, 0), (
        (tmp_path / "cm.log").read_text()[-2000:], (tmp_path / "sched.log").read_text()[-2000:])
