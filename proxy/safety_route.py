"""The service-CIDR safety route: interface ``keelson-svc0`` owning the whole service range.

Why: a packet for a Service IP that no rule matched (a Service not programmed yet, or just
deleted) must never leave the node unrewritten towards the default gateway. Routing the
service CIDR into a local interface with no ports keeps such packets on the node. A
``blackhole``/``unreachable`` route cannot be used: local ``connect()`` then fails before the
nat OUTPUT DNAT ever runs. A ``dummy`` device is the natural choice; kernels without the
dummy driver get an empty bridge, which behaves the same for routing.

Invariant: created before any rule is written; removed only by ``--cleanup``; only the
interface with exactly this name is ever touched.
"""

from __future__ import annotations

import errno
import logging

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger(__name__)

INTERFACE = "keelson-svc0"
_NO_DRIVER = {errno.EOPNOTSUPP, errno.ENODEV, errno.ENOENT, errno.EINVAL}


class SafetyRouteError(Exception):
    """The safety interface or its route could not be set up."""


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _create_interface(ipr: IPRoute) -> str:
    try:
        ipr.link("add", ifname=INTERFACE, kind="dummy")
        return "dummy"
    except NetlinkError as error:
        if error.code not in _NO_DRIVER:
            raise
    ipr.link("add", ifname=INTERFACE, kind="bridge")
    return "bridge"


def ensure(service_cidr: str, *, netns: str | None = None) -> None:
    """Create (if needed) and bring up the interface, and route ``service_cidr`` into it."""
    try:
        with IPRoute(netns=netns) as ipr:
            index = _index(ipr, INTERFACE)
            if index is None:
                kind = _create_interface(ipr)
                index = _index(ipr, INTERFACE)
                log.info("created %s interface %s", kind, INTERFACE)
            ipr.link("set", index=index, state="up")
            ipr.route("replace", dst=service_cidr, oif=index)
    except NetlinkError as error:
        raise SafetyRouteError(
            f"could not route service CIDR {service_cidr} into {INTERFACE}: {error}"
            " (the proxy needs CAP_NET_ADMIN)"
        ) from error


def remove(*, netns: str | None = None) -> bool:
    """Delete the interface (its routes go with it); True if it existed."""
    with IPRoute(netns=netns) as ipr:
        index = _index(ipr, INTERFACE)
        if index is None:
            return False
        ipr.link("del", index=index)
        return True
