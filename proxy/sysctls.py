"""Kernel settings the proxy needs, and putting them back on ``--cleanup``.

* ``net.ipv4.ip_forward=1``: DNAT to pods on the node bridge is forwarding.
* ``net.bridge.bridge-nf-call-iptables=1``: bridged pod-to-pod traffic (hairpin through a
  Service) must traverse iptables so the DNAT and masquerade rules see it.
* ``net.ipv4.conf.all.route_localnet=1`` only with ``--nodeport-localhost``: it lets
  127.0.0.1 be DNATed off-host, which is off by default for safety.

Invariant: the value found before the first change is recorded once in a state file, so
``--cleanup`` restores exactly what the proxy changed and nothing else, however often the
proxy restarted in between.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from proxy import commands

log = logging.getLogger(__name__)

IP_FORWARD = "net.ipv4.ip_forward"
BRIDGE_NF_CALL_IPTABLES = "net.bridge.bridge-nf-call-iptables"
ROUTE_LOCALNET = "net.ipv4.conf.all.route_localnet"
STATE_FILE = "sysctls.json"


def read(key: str, *, netns: str | None = None) -> str | None:
    result = commands.run_sync(["sysctl", "-n", key], netns=netns)
    return result.stdout.decode().strip() if result.ok else None


def write(key: str, value: str, *, netns: str | None = None) -> bool:
    return commands.run_sync(["sysctl", "-q", "-w", f"{key}={value}"], netns=netns).ok


def wanted(*, nodeport_localhost: bool) -> dict[str, str]:
    settings = {IP_FORWARD: "1", BRIDGE_NF_CALL_IPTABLES: "1"}
    if nodeport_localhost:
        settings[ROUTE_LOCALNET] = "1"
    return settings


def _load(state_dir: Path) -> dict[str, str]:
    path = state_dir / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def apply(settings: dict[str, str], *, state_dir: Path, netns: str | None = None) -> None:
    """Set each sysctl, remembering its original value the first time it is changed."""
    original = _load(state_dir)
    for key, value in settings.items():
        current = read(key, netns=netns)
        if current is None:
            log.warning("sysctl %s is not available (is br_netfilter loaded?); skipped", key)
            continue
        if current == value:
            continue
        original.setdefault(key, current)
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / STATE_FILE).write_text(json.dumps(original, indent=1, sort_keys=True))
        if not write(key, value, netns=netns):
            log.warning("could not set sysctl %s=%s", key, value)


def restore(*, state_dir: Path, netns: str | None = None) -> bool:
    """Put back every recorded original value and forget them; True if any was recorded."""
    original = _load(state_dir)
    for key, value in original.items():
        write(key, value, netns=netns)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return bool(original)
