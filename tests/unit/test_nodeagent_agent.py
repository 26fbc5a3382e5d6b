"""run_agent's start-up errors: one sentence a person can act on, nothing left running."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from apiclient.client import ApiClient
from apiclient.resources import NODES
from apiclient.testing import FakeApiServer
from nodeagent import agent as agent_module
from nodeagent.agent import AgentError, AgentOptions, run_agent
from nodeagent.runtime.fake import FakeRuntime
from nodeagent.runtime.interface import RuntimeUnavailableError


async def test_missing_pod_cidr_is_a_clear_error_after_waiting_for_it(tmp_path, monkeypatch):
    """A new node waits for node IPAM (like kubelet), then gives up with a clear error."""
    monkeypatch.setattr(agent_module, "POD_CIDR_WAIT_SECONDS", 1.0)
    async with FakeApiServer() as server, ApiClient(server.config()) as client:
        options = AgentOptions(kubeconfig="", node_name="kt-node", data_dir=str(tmp_path))

        with pytest.raises(AgentError, match=r"no spec\.podCIDR after 1s and no --pod-cidr"):
            await run_agent(options, client, registry=CollectorRegistry(), runtime=FakeRuntime())

        node = server.objects[(NODES, "kt-node")]
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "docker://fake-1.0"
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "kt-node"


async def test_unreachable_runtime_is_a_clear_error(tmp_path):
    class DownRuntime(FakeRuntime):
        async def version(self) -> str:
            raise RuntimeUnavailableError("cannot reach dockerd: connection refused")

    async with FakeApiServer() as server, ApiClient(server.config()) as client:
        options = AgentOptions(kubeconfig="", node_name="kt-node", data_dir=str(tmp_path))

        with pytest.raises(AgentError, match="cannot talk to the container runtime"):
            await run_agent(options, client, registry=CollectorRegistry(), runtime=DownRuntime())

        assert (NODES, "kt-node") not in server.objects
