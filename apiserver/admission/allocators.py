"""Service ClusterIP and NodePort allocation, like kube-apiserver's bitmap allocators.

Why: two Services must never get the same ClusterIP or NodePort, also when several
apiserver tasks (or processes sharing one store) create Services at once. As in
Kubernetes, the state of a range is one ``RangeAllocation`` object in the store: the range
text plus a bitmap (bit ``i`` set = offset ``i`` taken), base64-encoded in JSON.

Invariants:
- Every change is a compare-and-swap on the object's mod revision (``Storage.update`` with
  ``expected_mod_revision``), retried on conflict against the fresh value, so concurrent
  allocators never hand out the same offset. Within one allocator an ``asyncio.Lock``
  serialises callers so they do not lose CAS races to each other.
- ClusterIPs: never the network address, nor the IPv4 broadcast address. The first
  usable IP (``10.96.0.1``) belongs to the ``kubernetes`` Service and is handed out only
  when asked for explicitly.
- A stored bitmap for a different range than the configured one is an error, never
  silently reinterpreted.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import random
import re
from collections.abc import Callable
from typing import TypeVar

import orjson

from apiserver.storage.interface import (
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    Storage,
)

T = TypeVar("T")

# kube-apiserver refuses service CIDRs with more than 2^20 addresses (IPv4 /12, IPv6 /108).
MAX_RANGE_BITS = 20
_FREE_BYTE = re.compile(rb"[^\xff]")
_PORT_RANGE = re.compile(r"(?P<low>\d+)(?:-(?P<high>\d+))?")


class AllocationError(Exception):
    """An allocation request that cannot be satisfied (message as Kubernetes words it)."""


class AlreadyAllocatedError(AllocationError):
    pass


class NotInRangeError(AllocationError):
    pass


class RangeFullError(AllocationError):
    def __init__(self) -> None:
        super().__init__("range is full")


def parse_port_range(text: str) -> tuple[int, int]:
    """``"30000-32767"`` (or a single port ``"30000"``) -> ``(30000, 32767)``."""
    match = _PORT_RANGE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid port range {text!r}: expected MIN-MAX, e.g. 30000-32767")
    low = int(match["low"])
    high = int(match["high"]) if match["high"] is not None else low
    if not 1 <= low <= high <= 65535:
        raise ValueError(
            f"invalid port range {text!r}: expected 1 <= MIN <= MAX <= 65535"
        )
    return low, high


class ClusterIPAllocator:
    """Allocates Service ClusterIPs from ``cidr`` (e.g. ``10.96.0.0/12``)."""

    def __init__(self, storage: Storage, cidr: str, *,
                 key: str = "/registry/ranges/serviceips") -> None:
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=True)
        except ValueError as error:
            raise ValueError(f"invalid service CIDR {cidr!r}: {error}") from None
        host_bits = network.max_prefixlen - network.prefixlen
        if host_bits > MAX_RANGE_BITS:
            raise ValueError(
                f"service CIDR {cidr} is too large: at most 2^{MAX_RANGE_BITS} addresses "
                f"(an IPv4 prefix of /{32 - MAX_RANGE_BITS} or longer)"
            )
        # Offset 0 is the first address after the network address; IPv4 also loses the
        # broadcast address.
        size = network.num_addresses - (2 if network.version == 4 else 1)
        if size < 1:
            raise ValueError(f"service CIDR {cidr} is too small: it has no usable address")
        self.network = network
        self._first = network.network_address + 1
        self._bitmap = _BitmapRange(storage, key, range_text=str(network), size=size)

    async def allocate(self, ip: str | None = None) -> str:
        """Take ``ip``, or a random free one when ``ip`` is ``None``."""
        if ip is None:
            offset = await self._bitmap.allocate_next(skip_first=True)
        else:
            offset = await self._bitmap.allocate(self._offset(ip), what="IP")
        return str(self._first + offset)

    async def release(self, ip: str) -> None:
        """Free ``ip``; releasing a free or out-of-range IP does nothing."""
        offset = self._offset_or_none(ip)
        if offset is not None:
            await self._bitmap.release(offset)

    async def is_allocated(self, ip: str) -> bool:
        offset = self._offset_or_none(ip)
        return offset is not None and await self._bitmap.is_set(offset)

    def _offset(self, ip: str) -> int:
        offset = self._offset_or_none(ip)
        if offset is None:
            raise NotInRangeError(
                "provided IP is not in the valid range. "
                f"The range of valid IPs is {self.network}"
            )
        return offset

    def _offset_or_none(self, ip: str) -> int | None:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if address.version != self.network.version:
            return None
        offset = int(address) - int(self._first)
        return offset if 0 <= offset < self._bitmap.size else None


class NodePortAllocator:
    """Allocates Service NodePorts from a port range (e.g. ``30000-32767``)."""

    def __init__(self, storage: Storage, port_range: str = "30000-32767", *,
                 key: str = "/registry/ranges/servicenodeports") -> None:
        self.low, self.high = parse_port_range(port_range)
        self.range_text = f"{self.low}-{self.high}"
        self._bitmap = _BitmapRange(storage, key, range_text=self.range_text,
                                    size=self.high - self.low + 1)

    async def allocate(self, port: int | None = None) -> int:
        """Take ``port``, or a random free one when ``port`` is ``None``."""
        if port is None:
            return self.low + await self._bitmap.allocate_next(skip_first=False)
        if not self.low <= port <= self.high:
            raise NotInRangeError(
                "provided port is not in the valid range. "
                f"The range of valid ports is {self.range_text}"
            )
        return self.low + await self._bitmap.allocate(port - self.low, what="port")

    async def release(self, port: int) -> None:
        """Free ``port``; releasing a free or out-of-range port does nothing."""
        if self.low <= port <= self.high:
            await self._bitmap.release(port - self.low)

    async def is_allocated(self, port: int) -> bool:
        return self.low <= port <= self.high and await self._bitmap.is_set(port - self.low)


class _BitmapRange:
    """A bitmap of ``size`` offsets persisted at ``key`` and changed only by CAS."""

    def __init__(self, storage: Storage, key: str, *, range_text: str, size: int) -> None:
        self.size = size
        self._storage = storage
        self._key = key
        self._range_text = range_text
        self._lock = asyncio.Lock()

    async def allocate(self, offset: int, *, what: str) -> int:
        def take(bitmap: bytearray) -> int:
            if _test_bit(bitmap, offset):
                raise AlreadyAllocatedError(f"provided {what} is already allocated")
            _set_bit(bitmap, offset, value=True)
            return offset

        return await self._change(take)

    async def allocate_next(self, *, skip_first: bool) -> int:
        """A free offset found from a random start (so concurrent apiservers rarely
        collide), scanning forward and wrapping around."""
        lowest = 1 if skip_first else 0

        def take(bitmap: bytearray) -> int:
            if lowest >= self.size:
                raise RangeFullError
            start = random.randrange(lowest, self.size)
            offset = _first_clear_bit(bitmap, start, self.size)
            if offset is None:
                offset = _first_clear_bit(bitmap, lowest, start)
            if offset is None:
                raise RangeFullError
            _set_bit(bitmap, offset, value=True)
            return offset

        return await self._change(take)

    async def release(self, offset: int) -> None:
        def clear(bitmap: bytearray) -> None:
            _set_bit(bitmap, offset, value=False)

        await self._change(clear)

    async def is_set(self, offset: int) -> bool:
        kv = await self._storage.get(self._key)
        return kv is not None and _test_bit(self._decode(kv.value), offset)

    async def _change(self, mutate: Callable[[bytearray], T]) -> T:
        """Apply ``mutate`` to the stored bitmap by CAS, retrying on a lost race."""
        async with self._lock:
            current = await self._storage.get(self._key)
            while True:
                if current is None:
                    bitmap = bytearray((self.size + 7) // 8)
                else:
                    bitmap = self._decode(current.value)
                before = bytes(bitmap)
                result = mutate(bitmap)
                if bytes(bitmap) == before:
                    return result  # nothing to write (e.g. releasing a free offset)
                value = self._encode(bitmap)
                try:
                    if current is None:
                        await self._storage.create(self._key, value)
                    else:
                        await self._storage.update(
                            self._key, value, expected_mod_revision=current.mod_revision)
                    return result
                except ConflictError as conflict:
                    current = conflict.current
                except KeyExistsError:
                    current = await self._storage.get(self._key)
                except KeyNotFoundError:
                    current = None

    def _encode(self, bitmap: bytearray) -> bytes:
        return orjson.dumps({
            "kind": "RangeAllocation",
            "apiVersion": "v1",
            "metadata": {},
            "range": self._range_text,
            "data": base64.b64encode(bitmap).decode("ascii"),
        })

    def _decode(self, value: bytes) -> bytearray:
        document = orjson.loads(value)
        if document.get("range") != self._range_text:
            raise AllocationError(
                f"the allocation state at {self._key} is for range {document.get('range')}, "
                f"not the configured {self._range_text}; restore the previous range flag "
                "or remove that key"
            )
        bitmap = bytearray(base64.b64decode(document.get("data", "")))
        expected = (self.size + 7) // 8
        if len(bitmap) < expected:
            bitmap.extend(bytes(expected - len(bitmap)))
        return bitmap


def _test_bit(bitmap: bytearray, offset: int) -> bool:
    return bool(bitmap[offset // 8] & (1 << (offset % 8)))


def _set_bit(bitmap: bytearray, offset: int, *, value: bool) -> None:
    if value:
        bitmap[offset // 8] |= 1 << (offset % 8)
    else:
        bitmap[offset // 8] &= ~(1 << (offset % 8)) & 0xFF


def _first_clear_bit(bitmap: bytearray, start: int, stop: int) -> int | None:
    """The first clear bit in ``[start, stop)``; whole bytes are skipped by a regex scan."""
    offset = start
    while offset < stop:
        if offset % 8 == 0:
            match = _FREE_BYTE.search(bitmap, offset // 8, (stop + 7) // 8)
            if match is None:
                return None
            offset = match.start() * 8
            if offset >= stop:
                return None
        if not _test_bit(bitmap, offset):
            return offset
        offset += 1
    return None
