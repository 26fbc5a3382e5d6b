"""Every netlink call the node agent makes, as plain functions (Neutron privsep style).

Each function opens ``IPRoute`` for exactly one namespace as a context manager and closes
it before returning, so no socket outlives a call and a namespace that vanished mid-way
cannot leak file descriptors. ``netns`` is ``None`` for the agent's own namespace or a path
(``/proc/<pid>/ns/net``, ``/var/run/netns/<name>``); namespaces are never created here.
Kernel errors become the domain exceptions below; nothing sleeps or polls, and
nothing forks (see ``_open_socket_in``).

The functions are synchronous (pyroute2's sync API runs its own event loop), so async code
calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError as _KernelError

BRIDGE_PORT_HAIRPIN = 1  # IFLA_BRPORT_MODE value for hairpin (reflective relay)
_CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)


class NetworkError(Exception):
    """A netlink operation failed; the message names the link or namespace."""


class LinkNotFoundError(NetworkError):
    pass


class LinkExistsError(NetworkError):
    pass


class NamespaceNotFoundError(NetworkError):
    pass


def _translate(err: _KernelError, what: str) -> NetworkError:
    message = f"{what}: {os.strerror(err.code)}"
    if err.code == errno.ENODEV:
        return LinkNotFoundError(message)
    if err.code == errno.EEXIST:
        return LinkExistsError(message)
    return NetworkError(message)


def _setns(fd: int, what: str) -> None:
    if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise NamespaceNotFoundError(f"{what}: setns failed: {os.strerror(code)}")


def _open_socket_in(netns: str, what: str) -> IPRoute:
    """An IPRoute whose socket lives in ``netns``, opened without forking.

    setns(2) switches only the calling thread, so this thread enters the namespace,
    creates the socket (which stays bound to it) and comes straight back. pyroute2's own
    ``IPRoute(netns=...)`` forks a helper instead, and a forked child shares asyncio's
    signal wake-up fd: a signal to that child would reach our event loop as if it were
    meant for the agent (a SIGTERM there once cancelled the whole agent).
    """
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns, os.O_RDONLY)
    except OSError as err:
        os.close(original)
        raise NamespaceNotFoundError(f"{what}: cannot open {netns}: {err}") from err
    try:
        _setns(target, what)
        try:
            return IPRoute()
        finally:
            _setns(original, f"{what} (returning to the agent's namespace)")
    finally:
        os.close(target)
        os.close(original)


@contextmanager
def _iproute(netns: str | None, what: str) -> Iterator[IPRoute]:
    if netns is not None and not os.path.exists(netns):
        raise NamespaceNotFoundError(f"{what}: network namespace {netns} does not exist")
    ipr = IPRoute() if netns is None else _open_socket_in(netns, what)
    try:
        yield ipr
    except _KernelError as err:
        raise _translate(err, what) from err
    finally:
        ipr.close()


def _index(ipr: IPRoute, name: str, what: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise LinkNotFoundError(f"{what}: no link named {name}")
    return int(found[0])


def link_exists(name: str, *, netns: str | None = None) -> bool:
    with _iproute(netns, f"look up {name}") as ipr:
        return bool(ipr.link_lookup(ifname=name))


def list_links(*, netns: str | None = None) -> list[str]:
    with _iproute(netns, "list links") as ipr:
        return [str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()]


def ensure_bridge(name: str, *, address: str, prefixlen: int, netns: str | None = None) -> None:
    """Create the bridge if missing, make sure it carries ``address/prefixlen`` and is up."""
    what = f"ensure bridge {name}"
    with _iproute(netns, what) as ipr:
        if not ipr.link_lookup(ifname=name):
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except _KernelError as err:
                if err.code != errno.EEXIST:  # a concurrent creator won the race
                    raise
        index = _index(ipr, name, what)
        present = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index)}
        if (address, prefixlen) not in present:
            ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")


def create_veth(name: str, *, peer: str, netns: str | None = None) -> None:
    with _iproute(netns, f"create veth {name}") as ipr:
        ipr.link("add", ifname=name, kind="veth", peer=peer)


def attach_to_bridge(name: str, *, bridge: str, netns: str | None = None) -> None:
    """Enslave ``name`` to ``bridge`` with hairpin on (a pod can reach itself via a Service)."""
    what = f"attach {name} to {bridge}"
    with _iproute(netns, what) as ipr:
        index = _index(ipr, name, what)
        ipr.link("set", index=index, master=_index(ipr, bridge, what))
        ipr.brport("set", index=index, mode=BRIDGE_PORT_HAIRPIN)
        ipr.link("set", index=index, state="up")


def hairpin_enabled(name: str, *, netns: str | None = None) -> bool:
    what = f"read bridge port {name}"
    with _iproute(netns, what) as ipr:
        (link,) = ipr.brport("show", index=_index(ipr, name, what))
        protinfo = link.get_attr("IFLA_PROTINFO")
        return bool(protinfo and protinfo.get_attr("IFLA_BRPORT_MODE") == BRIDGE_PORT_HAIRPIN)


def move_to_netns(name: str, *, target: str, netns: str | None = None) -> None:
    what = f"move {name} into {target}"
    if not os.path.exists(target):
        raise NamespaceNotFoundError(f"{what}: network namespace does not exist")
    with _iproute(netns, what) as ipr:
        ipr.link("set", index=_index(ipr, name, what), net_ns_fd=target)


def configure_interface(
    name: str, *, rename_to: str, address: str, prefixlen: int, gateway: str, netns: str
) -> None:
    """Inside a pod namespace: rename, address, up, ``lo`` up, default route via gateway."""
    what = f"configure {rename_to} in {netns}"
    with _iproute(netns, what) as ipr:
        index = _index(ipr, name, what)
        if name != rename_to:
            ipr.link("set", index=index, ifname=rename_to)
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")
        ipr.link("set", index=_index(ipr, "lo", what), state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=index)


def interface_addresses(name: str, *, netns: str | None = None) -> list[str]:
    """IPv4 addresses as ``a.b.c.d/len`` (link-local IPv6 is noise for pod networking)."""
    what = f"read addresses of {name}"
    with _iproute(netns, what) as ipr:
        return [
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=_index(ipr, name, what), family=socket.AF_INET)
        ]


def delete_link(name: str, *, netns: str | None = None) -> bool:
    """Delete a link; returns False when it was already gone (idempotent teardown)."""
    with _iproute(netns, f"delete {name}") as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return False
        try:
            ipr.link("del", index=found[0])
        except _KernelError as err:
            if err.code == errno.ENODEV:
                return False
            raise
        return True
