"""`kill -9` of a real agent process, then a restart: same containers, same IP, no restart.

The agent runs as its own process (the `keelson agent` code path, ``run_agent``) against a
real ``keelson apiserver`` over HTTPS, with a node's credentials (``system:node:<name>``),
so SIGKILL hits exactly what it would hit in production: no clean-up code runs, the IPAM
files and Docker labels are all the next agent has.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import docker
import pytest

from tests.e2e.nodeagent.agent_support import docker_ids, eventually, new_node
from tests.e2e.nodeagent.conftest import BUSYBOX, _docker_available
from tests.support.apiserver import free_port, stop_process

pytestmark = [pytest.mark.docker, pytest.mark.root]

AGENT = textwrap.dedent(
    """
    import asyncio, signal, sys
    from apiclient.client import ApiClient
    from nodeagent.agent import AgentOptions, run_agent

    kubeconfig, node, data_dir, bridge, pod_cidr, port = sys.argv[1:7]
    options = AgentOptions(kubeconfig=kubeconfig, node_name=node, data_dir=data_dir,
                           pod_cidr=pod_cidr, bridge_name=bridge,
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


def spawn(kubeconfig: Path, node: str, data_dir: Path, bridge: str,
          pod_cidr: str) -> subprocess.Popen:
    with (data_dir / "agent.log").open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                AGENT,
                str(kubeconfig),
                node,
                str(data_dir),
                bridge,
                pod_cidr,
                str(free_port()),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


async def test_kill_9_then_restart_keeps_container_ids_and_ip(apiserver, tmp_path):
    if not _docker_available():
        pytest.skip("needs a running dockerd")
    node = new_node(apiserver, tmp_path / "agent")
    node.data_dir.mkdir()
    processes: list[subprocess.Popen] = []
    try:
        pod = node.create_pod(
            "survivor", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "1000"]}])
        uid = pod["metadata"]["uid"]

        def status() -> dict:
            return (node.get_pod("survivor") or {}).get("status") or {}

        def start() -> None:
            processes.append(
                spawn(node.kubeconfig, node.name, node.data_dir, node.bridge, node.pod_cidr))

        start()
        await eventually(lambda: status().get("phase") == "Running", timeout=30)
        ids, ip = docker_ids(uid), status()["podIP"]

        processes[0].kill()  # SIGKILL, by PID
        processes[0].wait()
        start()
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
            stop_process(process)
        await node.cleanup()
