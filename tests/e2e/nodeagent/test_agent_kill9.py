"""`kill -9` of a real agent process, then a restart: same containers, same IP, no restart.

The agent runs as its own process (the `keelson agent` code path, ``run_agent``) against
the fake API server over HTTP, so SIGKILL hits exactly what it would hit in production:
no clean-up code runs, the IPAM files and Docker labels are all the next agent has.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import docker
import pytest

from apiclient.resources import PODS
from apiclient.testing import FakeApiServer
from nodeagent.network import netlink
from nodeagent.network.bridge import host_veth_name
from tests.e2e.nodeagent.conftest import BUSYBOX, _docker_available, remove_labelled
from tests.e2e.nodeagent.test_agent_docker import docker_ids, free_port

pytestmark = [pytest.mark.docker, pytest.mark.root]

AGENT = textwrap.dedent(
    """
    import asyncio, signal, sys
    from apiclient.client import ApiClient
    from nodeagent.agent import AgentOptions, run_agent

    kubeconfig, node, data_dir, bridge, port = sys.argv[1:6]
    options = AgentOptions(kubeconfig=kubeconfig, node_name=node, data_dir=data_dir,
                           pod_cidr="10.251.5.0/24", bridge_name=bridge,
                           kubelet_port=int(port), metrics_bind_address="127.0.0.1:0")

    async def main():
        client = ApiClient.from_kubeconfig(kubeconfig)
        task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await run_agent(options, client)
        finally:
            await client.close()

    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        pass
    """
)


def spawn(kubeconfig: Path, node: str, data_dir: Path, bridge: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            AGENT,
            str(kubeconfig),
            node,
            str(data_dir),
            bridge,
            str(free_port()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / "agent.log").open("ab"),
    )


async def eventually(check, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.1)


async def test_kill_9_then_restart_keeps_container_ids_and_ip(tmp_path):
    if not _docker_available():
        pytest.skip("needs a running dockerd")
    node, bridge = f"kt-node-{secrets.token_hex(3)}", f"kt-br{secrets.token_hex(2)}"
    data_dir = tmp_path / "agent"
    data_dir.mkdir()
    uid = f"kt-{uuid.uuid4()}"
    processes: list[subprocess.Popen] = []
    async with FakeApiServer() as server:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: c, cluster: {{server: '{server.url}'}}}}]\n"
            "contexts: [{name: c, context: {cluster: c}}]\nusers: []\n"
        )
        try:
            server.seed(
                PODS,
                {
                    "metadata": {"name": "survivor", "namespace": "default", "uid": uid},
                    "spec": {
                        "nodeName": node,
                        "containers": [
                            {"name": "c", "image": BUSYBOX, "command": ["sleep", "1000"]}
                        ],
                    },
                },
            )

            def status() -> dict:
                pod = server.objects.get((PODS, "default/survivor")) or {}
                return pod.get("status") or {}

            processes.append(spawn(kubeconfig, node, data_dir, bridge))
            await eventually(lambda: status().get("phase") == "Running")
            ids, ip = docker_ids(uid), status()["podIP"]

            processes[0].send_signal(signal.SIGKILL)
            processes[0].wait()
            processes.append(spawn(kubeconfig, node, data_dir, bridge))
            await asyncio.sleep(4)  # several PLEG relists and syncs of the new agent

            assert processes[1].poll() is None
            assert docker_ids(uid) == ids
            assert status()["podIP"] == ip
            assert status()["containerStatuses"][0]["restartCount"] == 0
            api = docker.APIClient(version="1.41")
            states = {api.inspect_container(c)["State"]["Status"] for c in ids}
            api.close()
            assert states == {"running"}
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=30)
            remove_labelled(f"io.keelson.pod.uid={uid}")
            for link in (bridge, host_veth_name(uid)):
                await asyncio.to_thread(netlink.delete_link, link)
