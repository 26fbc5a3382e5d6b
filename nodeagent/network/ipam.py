"""Host-local IP address management for the node's pod CIDR.

One file per allocated address under ``DATA_DIR/ipam/<cidr>/`` (the CNI host-local layout),
named after the address and holding the owner (the sandbox id). ``O_CREAT | O_EXCL`` makes
creating that file the atomic claim: two allocators can never hand out one address, even
across processes. ``last_reserved_ip`` rotates the search start so a just-released address
is not reused at once (stale conntrack entries, slow clients).

Invariant kept by ``reconcile``: every allocation belongs to a live sandbox and no sandbox
holds two addresses. It is run at start and after every failed set-up. Files younger than
the caller's snapshot of live sandboxes are left alone, so a concurrent set-up that claimed
an address after the snapshot is never released under its feet.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path

_LAST_RESERVED = "last_reserved_ip"


class IpamError(Exception):
    pass


class PoolExhaustedError(IpamError):
    pass


class HostLocalIpam:
    def __init__(self, data_dir: str | os.PathLike[str], pod_cidr: str) -> None:
        self.network = ipaddress.ip_network(pod_cidr, strict=False)
        self.directory = Path(data_dir) / "ipam" / str(self.network).replace("/", "_")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.gateway = self.network.network_address + 1

    def _candidates(self) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        hosts = [ip for ip in self.network.hosts() if ip != self.gateway]
        try:
            last = ipaddress.ip_address((self.directory / _LAST_RESERVED).read_text().strip())
            start = hosts.index(last) + 1
        except (OSError, ValueError):
            start = 0
        return hosts[start:] + hosts[:start]

    def allocations(self) -> dict[str, str]:
        """Address -> owner for every allocation on disk."""
        result: dict[str, str] = {}
        for path in self.directory.iterdir():
            if path.name == _LAST_RESERVED or path.name.endswith(".tmp"):
                continue
            with contextlib.suppress(OSError):
                result[path.name] = path.read_text().strip()
        return result

    def address_of(self, owner: str) -> str | None:
        for address, holder in sorted(self.allocations().items()):
            if holder == owner:
                return address
        return None

    def allocate(self, owner: str) -> str:
        """Claim a free address for ``owner``; idempotent for an owner that already has one."""
        existing = self.address_of(owner)
        if existing is not None:
            return existing
        for candidate in self._candidates():
            path = self.directory / str(candidate)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(owner)
            self._write_last_reserved(str(candidate))
            return str(candidate)
        raise PoolExhaustedError(
            f"no free address left in {self.network}; delete pods or widen the pod CIDR"
        )

    def _write_last_reserved(self, address: str) -> None:
        tmp = self.directory / f"{_LAST_RESERVED}.{secrets.token_hex(6)}.tmp"
        tmp.write_text(address)
        tmp.replace(self.directory / _LAST_RESERVED)

    def release_owner(self, owner: str) -> list[str]:
        released = [a for a, holder in self.allocations().items() if holder == owner]
        for address in released:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / address).unlink()
        return released

    def reconcile(
        self, live_owners: Iterable[str], *, snapshot_time: float | None = None
    ) -> list[str]:
        """Release addresses of owners not in ``live_owners`` and duplicates; return them.

        ``snapshot_time`` is when ``live_owners`` was read (default: now); allocations
        made after it are kept because their owner may simply be too new to be listed.
        """
        live = set(live_owners)
        cutoff = time.time() if snapshot_time is None else snapshot_time
        released: list[str] = []
        seen: set[str] = set()
        for address, owner in sorted(
            self.allocations().items(), key=lambda item: ipaddress.ip_address(item[0])
        ):
            path = self.directory / address
            try:
                young = path.stat().st_mtime > cutoff
            except FileNotFoundError:
                continue
            if young and owner not in seen:
                seen.add(owner)
                continue
            if owner in live and owner not in seen:
                seen.add(owner)
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            released.append(address)
        return released
