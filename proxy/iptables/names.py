"""Every chain name the iptables proxier writes, in one place.

Invariant: a chain is ours if and only if ``is_our_chain`` says so; cleanup and stale-chain
deletion never touch anything else. Per-service and per-endpoint names are deterministic
(prefix + base32(sha256(key))[:16], as kube-proxy does) so a restarted proxy finds and
replaces the chains of its predecessor, and every name stays within iptables' 28 characters.
"""

import base64
import hashlib
from functools import lru_cache

PREFIX = "KEEL-"

SERVICES = "KEEL-SERVICES"
EXTERNAL_SERVICES = "KEEL-EXTERNAL-SERVICES"
NODEPORTS = "KEEL-NODEPORTS"
POSTROUTING = "KEEL-POSTROUTING"
MARK_MASQ = "KEEL-MARK-MASQ"
FORWARD = "KEEL-FORWARD"
FIREWALL = "KEEL-FIREWALL"

SERVICE_PREFIX = "KEEL-SVC-"
LOCAL_SERVICE_PREFIX = "KEEL-SVL-"
EXTERNAL_PREFIX = "KEEL-EXT-"
ENDPOINT_PREFIX = "KEEL-SEP-"

PER_SERVICE_PREFIXES = (SERVICE_PREFIX, LOCAL_SERVICE_PREFIX, EXTERNAL_PREFIX, ENDPOINT_PREFIX)

NAT_TOP_CHAINS = (SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ)
FILTER_TOP_CHAINS = (SERVICES, EXTERNAL_SERVICES, NODEPORTS, FORWARD, FIREWALL)


def is_our_chain(name: str) -> bool:
    """True for every chain keelson's proxy creates (top-level or per-service)."""
    return name.startswith(PREFIX)


def is_per_service_chain(name: str) -> bool:
    """True for chains that belong to one service port or endpoint (deleted when stale)."""
    return name.startswith(PER_SERVICE_PREFIXES)


@lru_cache(maxsize=200_000)
def _hash16(key: str) -> str:
    digest = hashlib.sha256(key.encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def service_chain(port_key: str, protocol: str) -> str:
    """KEEL-SVC-: the cluster-wide load-balancing chain of one service port."""
    return SERVICE_PREFIX + _hash16(port_key + protocol.lower())


def local_service_chain(port_key: str, protocol: str) -> str:
    """KEEL-SVL-: the node-local load-balancing chain (traffic policy Local)."""
    return LOCAL_SERVICE_PREFIX + _hash16(port_key + protocol.lower())


def external_chain(port_key: str, protocol: str) -> str:
    """KEEL-EXT-: entry chain for NodePort, external IP and load-balancer traffic."""
    return EXTERNAL_PREFIX + _hash16(port_key + protocol.lower())


def endpoint_chain(port_key: str, protocol: str, endpoint: str) -> str:
    """KEEL-SEP-: the DNAT chain of one endpoint ("ip:port") of one service port."""
    return ENDPOINT_PREFIX + _hash16(port_key + protocol.lower() + endpoint)
