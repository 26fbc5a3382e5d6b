"""Host-local IPAM: atomic claims, rotation, and reconciliation against live sandboxes."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from nodeagent.network.ipam import HostLocalIpam, PoolExhaustedError


def test_allocations_skip_gateway_and_persist_owner(tmp_path):
    ipam = HostLocalIpam(tmp_path, "10.244.1.0/24")

    first = ipam.allocate("sandbox-a")

    assert first == "10.244.1.2"
    assert (tmp_path / "ipam" / "10.244.1.0_24" / first).read_text() == "sandbox-a"
    assert HostLocalIpam(tmp_path, "10.244.1.0/24").address_of("sandbox-a") == first


def test_allocate_is_idempotent_per_owner(tmp_path):
    ipam = HostLocalIpam(tmp_path, "10.244.1.0/24")
    assert ipam.allocate("s") == ipam.allocate("s")
    assert len(ipam.allocations()) == 1


def test_released_address_is_not_reused_immediately(tmp_path):
    ipam = HostLocalIpam(tmp_path, "10.244.1.0/24")
    first = ipam.allocate("a")
    ipam.release_owner("a")
    assert ipam.allocate("b") != first


def test_concurrent_allocators_never_share_an_address(tmp_path):
    allocators = [HostLocalIpam(tmp_path, "10.244.1.0/28") for _ in range(4)]

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: allocators[i % 4].allocate(f"s{i}"), range(13)))

    assert len(set(got)) == 13  # /28 has 14 hosts, one is the gateway
    with pytest.raises(PoolExhaustedError):
        allocators[0].allocate("one-too-many")


def test_reconcile_releases_dead_owners_and_duplicates(tmp_path):
    ipam = HostLocalIpam(tmp_path, "10.244.1.0/24")
    live_ip = ipam.allocate("live")
    ipam.allocate("dead")
    duplicate = tmp_path / "ipam" / "10.244.1.0_24" / "10.244.1.200"
    duplicate.write_text("live")
    past = time.time() - 60
    for path in (tmp_path / "ipam" / "10.244.1.0_24").iterdir():
        os.utime(path, (past, past))

    released = ipam.reconcile({"live"})

    assert sorted(released) == ["10.244.1.200", "10.244.1.3"]
    assert ipam.allocations() == {live_ip: "live"}


def test_reconcile_keeps_allocations_newer_than_the_snapshot(tmp_path):
    ipam = HostLocalIpam(tmp_path, "10.244.1.0/24")
    snapshot = time.time() - 5
    address = ipam.allocate("created-after-listing")

    assert ipam.reconcile(set(), snapshot_time=snapshot) == []
    assert ipam.allocations() == {address: "created-after-listing"}
