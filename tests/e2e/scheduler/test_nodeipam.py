"""Node IPAM against a real apiserver: distinct /24s, survives a controller restart."""

from __future__ import annotations

import asyncio
import functools
import ipaddress

from apiclient.client import ApiClient
from apiclient.resources import NODES
from controllers.nodeipam import NodeIpamController
from tests.support.apiserver import ApiServer

from .conftest import controllers_running, create_node, eventually

ipam = functools.partial(NodeIpamController, cluster_cidr="10.244.0.0/16")


async def _cidrs(api: ApiClient, names: list[str]) -> dict[str, str] | None:
    found = {}
    for name in names:
        spec = (await api.get(NODES, name))["spec"]
        if not spec.get("podCIDR"):
            return None
        assert spec["podCIDRs"] == [spec["podCIDR"]]
        found[name] = spec["podCIDR"]
    return found


async def test_each_node_gets_its_own_block_also_after_a_restart(
        apiserver: ApiServer, client: ApiClient) -> None:
    first = [f"kt-n{index}" for index in range(5)]
    for name in first:
        await create_node(client, name)
    async with controllers_running(apiserver, [ipam]):
        assigned = await eventually(lambda: _cidrs(client, first), what="pod CIDRs")
    assert sorted(assigned.values()) == [f"10.244.{i}.0/24" for i in range(5)]

    # A fresh controller rebuilds what is taken from the nodes; a freed block is reused;
    # nodes arriving all at once while it runs still get distinct blocks.
    await client.delete(NODES, "kt-n2")
    later = [f"kt-n{index}" for index in range(5, 15)]
    async with controllers_running(apiserver, [ipam]):
        await asyncio.gather(*(create_node(client, name) for name in later))
        more = await eventually(lambda: _cidrs(client, later), what="pod CIDRs after restart")
    assert sorted(more.values(), key=ipaddress.ip_network) == \
        ["10.244.2.0/24", *(f"10.244.{i}.0/24" for i in range(5, 14))]
    shown = apiserver.kubectl("get", "nodes", "-o",
                              "custom-columns=NAME:.metadata.name,CIDR:.spec.podCIDR").stdout
    assert "10.244.5.0/24" in shown
