"""Reading rule counters of one of our chains on the legacy backend, with python-iptables.

Why python-iptables here and not on the write path: it talks libiptc directly, which is the
right tool to read a few counters (no text to parse), but it reads the whole table and is
slow in bulk (about 14 s for 110,000 rules), so the bulk write path stays iptables-restore.
Used to verify that a rule actually matched traffic (tests, debugging a Service).

libiptc works in the calling process's network namespace and only on the legacy backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.iptables import names


@dataclass(frozen=True)
class RuleCounter:
    comment: str  # the rule's comment ("ns/svc:port has no endpoints"), "" if none
    target: str
    packets: int
    bytes: int


def chain_counters(table: str, chain: str) -> list[RuleCounter]:
    """Counters of every rule in one of our chains, in order (legacy backend only)."""
    if not names.is_our_chain(chain):
        raise ValueError(f"{chain!r} is not a keelson chain")
    import iptc  # libiptc is loaded only when counters are read

    handle = iptc.Table(table, autocommit=False)
    handle.refresh()
    counters = []
    for rule in iptc.Chain(handle, chain).rules:
        packets, octets = rule.get_counters()
        comment = next((match.comment for match in rule.matches if match.name == "comment"), "")
        counters.append(RuleCounter(comment or "", rule.target.name, packets, octets))
    return counters
