"""Every chain name the iptables proxier writes, in one place.

Invariant: a chain is ours if and only if ``is_our_chain`` says so; cleanup and stale-chain
deletion never touch anything else. Per-service and per-endpoint names are deterministic
(prefix + base32(sha256(key))[:16], as kube-proxy does) so a restarted proxy finds and
replaces the chains of its predecessor, and every name stays within iptables' 28 characters.
"""

import hashlib

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

# An empty chain in the filter table (small, so checking it is cheap, unlike nat), written
# by every full sync that read the kernel: while it exists our rules are in place; if
# someone flushed the tables it is gone too. Not mangle: the proxy must not instantiate a
# table it does not otherwise use, or --cleanup could not leave iptables-save as it was.
CANARY = "KEEL-PROXY-CANARY"
CANARY_TABLE = "filter"

_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_BASE32_PAIRS = [a + b for a in _BASE32 for b in _BASE32]  # 10 bits -> 2 characters


def is_our_chain(name: str) -> bool:
    """True for every chain keelson's proxy creates (top-level or per-service)."""
    return name.startswith(PREFIX)


def is_per_service_chain(name: str) -> bool:
    """True for chains that belong to one service port or endpoint (deleted when stale)."""
    return name.startswith(PER_SERVICE_PREFIXES)


def _hash16(key: str) -> str:
    """base32(sha256(key))[:16], i.e. the base32 of the first 80 bits, computed directly
    (base64.b32encode is pure Python and dominated full-render time at 10k Services)."""
    n = int.from_bytes(hashlib.sha256(key.encode()).digest()[:10], "big")
    pairs = _BASE32_PAIRS
    return (
        pairs[n >> 70] + pairs[(n >> 60) & 1023] + pairs[(n >> 50) & 1023]
        + pairs[(n >> 40) & 1023] + pairs[(n >> 30) & 1023] + pairs[(n >> 20) & 1023]
        + pairs[(n >> 10) & 1023] + pairs[n & 1023]
    )  # fmt: skip


def port_chains(port_key: str, protocol: str) -> tuple[str, str, str]:
    """(KEEL-SVC-, KEEL-SVL-, KEEL-EXT-) of one service port, hashing once."""
    digest = _hash16(port_key + protocol.lower())
    return SERVICE_PREFIX + digest, LOCAL_SERVICE_PREFIX + digest, EXTERNAL_PREFIX + digest


def service_chain(port_key: str, protocol: str) -> str:
    """KEEL-SVC-: the cluster-wide load-balancing chain of one service port."""
    return SERVICE_PREFIX + _hash16(port_key + protocol.lower())


def endpoint_chain(port_key: str, protocol: str, endpoint: str) -> str:
    """KEEL-SEP-: the DNAT chain of one endpoint ("ip:port") of one service port."""
    return ENDPOINT_PREFIX + _hash16(port_key + protocol.lower() + endpoint)
