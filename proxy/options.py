"""ProxyOptions: every flag of ``keelson proxy`` (and of the proxy inside ``keelson agent``).

Defaults follow INTERFACE.md and kube-proxy. The CLI fills this dataclass; nothing in the
proxy reads flags or the environment itself.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("iptables",)  # nftables: later


def default_node_name() -> str:
    return socket.gethostname().lower()


@dataclass(frozen=True)
class ProxyOptions:
    mode: str = "iptables"
    cluster_cidr: str = "10.244.0.0/16"  # "" : use the Node's spec.podCIDR
    service_cidr: str = "10.96.0.0/12"
    node_name: str = field(default_factory=default_node_name)
    min_sync_period: float = 1.0  # seconds between two syncs at least
    sync_period: float = 30.0  # full resync at least this often
    healthz_bind_address: str = "0.0.0.0:10256"  # "" disables
    metrics_bind_address: str = "127.0.0.1:10249"  # "" disables; unused with an injected registry
    nodeport_addresses: tuple[str, ...] = ()  # CIDRs; empty: every local address
    nodeport_localhost: bool = False  # NodePorts on 127.0.0.1 (sets route_localnet)
    iptables_backend: str | None = None  # "legacy" | "nft"; None: detect like kube-proxy
    masquerade_all: bool = False
    health_check_bind_host: str = "0.0.0.0"  # where healthCheckNodePort servers listen
    state_dir: Path = Path("/run/keelson/proxy")  # original sysctl values for --cleanup
    netns: str | None = None  # run everything in this named network namespace (tests, bench)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"proxy mode {self.mode!r} is not supported; use one of {MODES}")
        if self.iptables_backend not in (None, "legacy", "nft"):
            raise ValueError(f"iptables backend {self.iptables_backend!r}: use legacy or nft")
        if self.min_sync_period < 0 or self.sync_period <= 0:
            raise ValueError("sync periods must be positive")
