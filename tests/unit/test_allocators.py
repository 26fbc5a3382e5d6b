"""ClusterIP and NodePort allocators against an in-memory etcd-shaped store.

The store yields to the event loop between reads and writes, so concurrent allocators
really interleave and lose compare-and-swap races to each other.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import pytest

from apiserver.admission.allocators import (
    AllocationError,
    ClusterIPAllocator,
    NodePortAllocator,
    parse_port_range,
)
from apiserver.storage.interface import (
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    RangeResult,
    Storage,
    StorageEvent,
)


class MemoryStorage(Storage):
    """Just enough of the Storage contract for the allocators: get/create/update (CAS)."""

    def __init__(self) -> None:
        self.revision = 0
        self.kvs: dict[str, KeyValue] = {}
        self.conflicts = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def current_revision(self) -> int:
        return self.revision

    async def compacted_revision(self) -> int:
        return 0

    async def get(self, key: str) -> KeyValue | None:
        await asyncio.sleep(0)
        return self.kvs.get(key)

    async def range(
        self, prefix: str, *, start_after: str | None = None, limit: int = 0
    ) -> RangeResult:
        raise NotImplementedError

    async def create(self, key: str, value: bytes) -> KeyValue:
        await asyncio.sleep(0)
        if key in self.kvs:
            raise KeyExistsError(key)
        self.revision += 1
        self.kvs[key] = KeyValue(key, value, self.revision, self.revision)
        return self.kvs[key]

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int) -> KeyValue:
        await asyncio.sleep(0)
        current = self.kvs.get(key)
        if current is None:
            raise KeyNotFoundError(key)
        if current.mod_revision != expected_mod_revision:
            self.conflicts += 1
            raise ConflictError(key, current)
        self.revision += 1
        self.kvs[key] = KeyValue(key, value, current.create_revision, self.revision)
        return self.kvs[key]

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> KeyValue:
        raise NotImplementedError

    def watch(self, *, from_revision: int, prefix: str = "") -> AsyncIterator[StorageEvent]:
        raise NotImplementedError

    async def compact(self, revision: int) -> None:
        raise NotImplementedError


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


async def test_200_concurrent_allocations_are_distinct_and_in_range(storage):
    allocator = ClusterIPAllocator(storage, "10.96.0.0/12")
    ips = await asyncio.gather(*(allocator.allocate() for _ in range(200)))
    assert len(set(ips)) == 200
    network = ipaddress.ip_network("10.96.0.0/12")
    for ip in ips:
        address = ipaddress.ip_address(ip)
        assert address in network
        assert address not in (network.network_address, network.broadcast_address)
        assert ip != "10.96.0.1"  # reserved for the kubernetes Service
        assert await allocator.is_allocated(ip)


async def test_two_allocators_sharing_a_store_never_hand_out_the_same_ip(storage):
    # Two apiservers: separate allocator objects (separate locks), one store; a /24 makes
    # random starts collide often, so only compare-and-swap keeps them apart.
    first = ClusterIPAllocator(storage, "10.97.0.0/24")
    second = ClusterIPAllocator(storage, "10.97.0.0/24")
    ips = await asyncio.gather(*((first if i % 2 else second).allocate() for i in range(200)))
    assert len(set(ips)) == 200
    assert storage.conflicts > 0  # the races really happened


async def test_requested_ip_is_honoured_once(storage):
    allocator = ClusterIPAllocator(storage, "10.96.0.0/12")
    assert await allocator.allocate("10.96.0.10") == "10.96.0.10"
    with pytest.raises(AllocationError, match=r"^provided IP is already allocated$"):
        await allocator.allocate("10.96.0.10")


async def test_first_ip_only_when_asked_for(storage):
    allocator = ClusterIPAllocator(storage, "10.96.0.0/29")  # usable .1 - .6
    dynamic = {await allocator.allocate() for _ in range(5)}
    assert dynamic == {f"10.96.0.{i}" for i in range(2, 7)}
    with pytest.raises(AllocationError, match=r"^range is full$"):
        await allocator.allocate()
    assert await allocator.allocate("10.96.0.1") == "10.96.0.1"


@pytest.mark.parametrize(
    "ip", ["10.112.0.1", "10.96.0.0", "10.111.255.255", "fd00::1", "not-an-ip"]
)
async def test_ip_outside_the_range_is_refused(storage, ip):
    allocator = ClusterIPAllocator(storage, "10.96.0.0/12")
    with pytest.raises(AllocationError) as error:
        await allocator.allocate(ip)
    assert str(error.value) == (
        "provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"
    )


async def test_release_makes_an_ip_allocatable_again(storage):
    allocator = ClusterIPAllocator(storage, "10.96.0.0/12")
    await allocator.allocate("10.96.5.5")
    await allocator.release("10.96.5.5")
    assert not await allocator.is_allocated("10.96.5.5")
    await allocator.release("10.96.5.5")  # idempotent
    assert await allocator.allocate("10.96.5.5") == "10.96.5.5"


async def test_a_small_range_fills_up_and_frees(storage):
    allocator = ClusterIPAllocator(storage, "10.96.0.0/28")  # 14 usable, .1 reserved
    ips = [await allocator.allocate() for _ in range(13)]
    assert len(set(ips)) == 13
    with pytest.raises(AllocationError, match=r"^range is full$"):
        await allocator.allocate()
    await allocator.release(ips[4])
    assert await allocator.allocate() == ips[4]


async def test_state_survives_a_new_allocator_on_the_same_store(storage):
    await ClusterIPAllocator(storage, "10.96.0.0/12").allocate("10.96.0.20")
    restarted = ClusterIPAllocator(storage, "10.96.0.0/12")
    assert await restarted.is_allocated("10.96.0.20")
    with pytest.raises(AllocationError, match="already allocated"):
        await restarted.allocate("10.96.0.20")


async def test_state_for_another_range_is_not_reinterpreted(storage):
    await ClusterIPAllocator(storage, "10.96.0.0/12").allocate("10.96.0.20")
    with pytest.raises(AllocationError, match=r"is for range 10\.96\.0\.0/12"):
        await ClusterIPAllocator(storage, "10.100.0.0/16").allocate()


async def test_ipv6_range(storage):
    allocator = ClusterIPAllocator(storage, "fd00:10:96::/112")
    ips = await asyncio.gather(*(allocator.allocate() for _ in range(50)))
    assert len(set(ips)) == 50
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("fd00:10:96::/112") for ip in ips)
    assert await allocator.allocate("fd00:10:96::1") == "fd00:10:96::1"


@pytest.mark.parametrize(
    "cidr", ["10.96.0.0/33", "10.96.0.1/12", "banana", "10.0.0.0/8", "10.96.0.0/31", "fd00::/64"]
)
def test_invalid_cidr_is_a_one_line_value_error(storage, cidr):
    with pytest.raises(ValueError) as error:
        ClusterIPAllocator(storage, cidr)
    message = str(error.value)
    assert "\n" not in message
    assert cidr in message


async def test_node_ports_concurrent_distinct(storage):
    allocator = NodePortAllocator(storage)
    ports = await asyncio.gather(*(allocator.allocate() for _ in range(200)))
    assert len(set(ports)) == 200
    assert all(30000 <= port <= 32767 for port in ports)


async def test_node_port_requested_taken_out_of_range_and_release(storage):
    allocator = NodePortAllocator(storage, "30000-32767")
    assert await allocator.allocate(30080) == 30080
    with pytest.raises(AllocationError, match=r"^provided port is already allocated$"):
        await allocator.allocate(30080)
    with pytest.raises(AllocationError) as error:
        await allocator.allocate(8080)
    assert str(error.value) == (
        "provided port is not in the valid range. The range of valid ports is 30000-32767"
    )
    await allocator.release(30080)
    assert not await allocator.is_allocated(30080)
    assert await allocator.allocate(30080) == 30080


async def test_node_port_range_fills_up(storage):
    allocator = NodePortAllocator(storage, "31000-31009")
    ports = {await allocator.allocate() for _ in range(10)}
    assert ports == set(range(31000, 31010))
    with pytest.raises(AllocationError, match=r"^range is full$"):
        await allocator.allocate()


def test_parse_port_range():
    assert parse_port_range("30000-32767") == (30000, 32767)
    assert parse_port_range(" 8080 ") == (8080, 8080)


@pytest.mark.parametrize("text", ["", "abc", "30000-", "32767-30000", "0-10", "1-70000", "1-2-3"])
def test_bad_port_range_is_a_one_line_value_error(text):
    with pytest.raises(ValueError) as error:
        parse_port_range(text)
    assert "\n" not in str(error.value)
    assert repr(text) in str(error.value)


async def test_every_address_of_a_multi_byte_range_is_found_before_full(storage):
    allocator = ClusterIPAllocator(storage, "10.96.0.0/23")  # 510 usable, .0.1 reserved
    ips = {await allocator.allocate() for _ in range(509)}
    network = ipaddress.ip_network("10.96.0.0/23")
    assert ips == {str(host) for host in network.hosts()} - {"10.96.0.1"}
    with pytest.raises(AllocationError, match=r"^range is full$"):
        await allocator.allocate()
