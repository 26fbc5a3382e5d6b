"""A new node registers itself with a real ``keelson apiserver``, with its own credentials.

``run_agent`` runs in the test against real dockerd and the module's apiserver (controllers
off, so no node IPAM ever assigns a pod CIDR): the Node it registers is what the admin
reads back, and without a pod CIDR it gives up with one sentence a person can act on.
"""

from __future__ import annotations

import docker
import pytest
from prometheus_client import CollectorRegistry

from apiclient.client import ApiClient
from apiclient.resources import NODES
from nodeagent import agent as agent_module
from nodeagent.agent import AgentError, AgentOptions, run_agent
from tests.e2e.nodeagent.agent_support import new_node
from tests.e2e.nodeagent.conftest import _docker_available

pytestmark = pytest.mark.docker


async def test_missing_pod_cidr_is_a_clear_error_after_waiting_for_it(
        apiserver, tmp_path, monkeypatch):
    """A new node waits for node IPAM (like kubelet), then gives up with a clear error."""
    if not _docker_available():
        pytest.skip("needs a running dockerd")
    monkeypatch.setattr(agent_module, "POD_CIDR_WAIT_SECONDS", 1.0)
    node = new_node(apiserver, tmp_path / "agent")
    options = AgentOptions(kubeconfig=str(node.kubeconfig), node_name=node.name,
                           data_dir=str(node.data_dir))
    try:
        async with ApiClient.from_kubeconfig(node.kubeconfig) as client:
            with pytest.raises(AgentError, match=r"no spec\.podCIDR after 1s and no --pod-cidr"):
                await run_agent(options, client, registry=CollectorRegistry())
    finally:
        await node.cleanup()

    async with ApiClient.from_kubeconfig(apiserver.kubeconfig) as admin:
        registered = await admin.get(NODES, node.name)
    api = docker.APIClient(version="1.41")
    try:
        runtime_version = api.version()["Version"]
    finally:
        api.close()
    assert registered["status"]["nodeInfo"]["containerRuntimeVersion"] == (
        f"docker://{runtime_version}")
    assert registered["metadata"]["labels"]["kubernetes.io/hostname"] == node.name
