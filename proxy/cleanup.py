"""``keelson proxy --cleanup``: remove everything the proxy ever set up, and nothing else.

Removes our jump rules and KEEL- chains on both iptables backends (a host may have switched
backends between runs), the ``keelson-svc0`` safety interface with its route, and restores
the sysctls recorded at change time. Idempotent: a second run finds nothing to do.
"""

from __future__ import annotations

import logging
import shutil

from proxy import sysctls
from proxy.iptables import restore
from proxy.options import ProxyOptions

log = logging.getLogger(__name__)


def cleanup(options: ProxyOptions) -> None:
    # Imported here, not at the top: proxy/__init__ exports cleanup, and the long-running
    # proxy must not load pyroute2 (see proxy/netlink.py).
    from proxy import netlink

    for backend in restore.BACKENDS:
        if shutil.which(restore.tool(backend, "restore")) is None:
            continue
        if restore.remove_all(backend, netns=options.netns):
            log.info("removed keelson proxy rules (%s)", backend)
    if netlink.remove_safety_route(netns=options.netns):
        log.info("removed interface %s", netlink.INTERFACE)
    if sysctls.restore(state_dir=options.state_dir, netns=options.netns):
        log.info("restored sysctls changed by the proxy")
