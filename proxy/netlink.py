"""The proxy's netlink steps (pyroute2), run in a short-lived child process.

Two things at start need netlink: the service-CIDR safety route and, with
``--nodeport-addresses``, this node's addresses in those CIDRs. Importing pyroute2 costs the
proxy ~9 MB resident for its whole life (its package imports every netlink family), for
calls made once. So the long-running proxy runs ``python -m proxy.netlink prepare ...``
(``proxy.app.prepare_node``) and reads the addresses from its output, the way it runs
iptables-restore and conntrack; ``--cleanup`` is one-shot and calls ``remove_safety_route``
directly. Neutron's privsep helper keeps privileged netlink work in a separate process for
the same kind of reason.

The safety route: interface ``keelson-svc0`` owns the whole service range. A packet for a
Service IP that no rule matched (a Service not programmed yet, or just deleted) must never
leave the node unrewritten towards the default gateway; routing the service CIDR into a
local interface with no ports keeps such packets on the node. A ``blackhole``/``unreachable``
route cannot be used: local ``connect()`` then fails before the nat OUTPUT DNAT ever runs.
A ``dummy`` device is the natural choice; kernels without the dummy driver get an empty
bridge, which behaves the same for routing.

Invariants: the route exists before any rule is written; it is removed only by
``--cleanup``; only the interface with exactly this name is ever touched.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import logging
import socket
import sys
from collections.abc import Sequence

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


def ensure_safety_route(service_cidr: str, *, netns: str | None = None) -> None:
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


def remove_safety_route(*, netns: str | None = None) -> bool:
    """Delete the interface (its routes go with it); True if it existed."""
    with IPRoute(netns=netns) as ipr:
        index = _index(ipr, INTERFACE)
        if index is None:
            return False
        ipr.link("del", index=index)
        return True


def local_addresses(cidrs: Sequence[str], *, netns: str | None = None) -> tuple[str, ...]:
    """This node's IPv4 addresses inside any of ``cidrs`` (the --nodeport-addresses filter)."""
    networks = [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]
    with IPRoute(netns=netns) as ipr:
        found = {msg.get("IFA_ADDRESS") for msg in ipr.get_addr(family=socket.AF_INET)}
    return tuple(
        sorted(
            (ip for ip in found if ip and any(ipaddress.ip_address(ip) in n for n in networks)),
            key=ipaddress.ip_address,
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy.netlink")
    steps = parser.add_subparsers(dest="step", required=True)
    prepare = steps.add_parser("prepare", help="safety route, then print local addresses")
    prepare.add_argument("service_cidr")
    prepare.add_argument("address_cidrs", nargs="*")
    args = parser.parse_args(argv)
    try:
        ensure_safety_route(args.service_cidr)
        addresses = local_addresses(args.address_cidrs) if args.address_cidrs else ()
    except (SafetyRouteError, NetlinkError, OSError, ValueError) as error:
        print(f"proxy netlink set-up failed: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"addresses": list(addresses)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
