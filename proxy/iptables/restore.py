"""Applying rendered rules with iptables-restore, and choosing the iptables backend.

The write path is one ``iptables-restore --noflush`` transaction per sync (counters off, the
xtables lock waited for in short steps): measured fastest and atomic per table. Jumps from the
built-in chains (PREROUTING, OUTPUT, INPUT, FORWARD, POSTROUTING) cannot be written that way
without duplicating them, so they are checked with ``-C`` and inserted with ``-I`` at full
syncs, as kube-proxy does. Only our own chains and our own jump rules are ever deleted.

Backend: legacy or nft, whichever the host already uses (more rules in its ``-save`` output),
legacy when both are empty, as kube-proxy's iptables wrapper decides.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from proxy import commands
from proxy.commands import CommandResult
from proxy.iptables import names

log = logging.getLogger(__name__)

BACKENDS = ("legacy", "nft")
WAIT_ARGS = ("-w", "5")  # wait up to 5 s for the xtables lock instead of failing at once
_ERROR_LINE = re.compile(rb"(?:Error occurred at line: |line )(\d+)(?: failed)?")


@dataclass(frozen=True)
class JumpRule:
    """A rule in a built-in chain sending traffic into one of our chains."""

    table: str
    chain: str
    target: str
    comment: str
    extra: tuple[str, ...] = ()

    def args(self) -> list[str]:
        return [*self.extra, "-m", "comment", "--comment", self.comment, "-j", self.target]


_NEW = ("-m", "conntrack", "--ctstate", "NEW")
_EXTERNAL = "keelson externally-visible service portals"
JUMP_RULES = (
    JumpRule("filter", "INPUT", names.EXTERNAL_SERVICES, _EXTERNAL, _NEW),
    JumpRule("filter", "FORWARD", names.EXTERNAL_SERVICES, _EXTERNAL, _NEW),
    JumpRule("filter", "INPUT", names.NODEPORTS, "keelson health check service ports"),
    JumpRule("filter", "FORWARD", names.SERVICES, "keelson service portals", _NEW),
    JumpRule("filter", "OUTPUT", names.SERVICES, "keelson service portals", _NEW),
    JumpRule("filter", "FORWARD", names.FORWARD, "keelson forwarding rules"),
    JumpRule("filter", "INPUT", names.FIREWALL, "keelson localnet firewall"),
    JumpRule("nat", "OUTPUT", names.SERVICES, "keelson service portals"),
    JumpRule("nat", "PREROUTING", names.SERVICES, "keelson service portals"),
    JumpRule("nat", "POSTROUTING", names.POSTROUTING, "keelson postrouting rules"),
)  # fmt: skip


class RestoreError(Exception):
    """iptables-restore rejected the input; ``line`` is the 1-based failing line or None."""

    def __init__(self, message: str, *, line: int | None, context: str) -> None:
        super().__init__(message)
        self.line = line
        self.context = context


class CommandError(Exception):
    """An iptables command other than restore failed."""


def failing_line(stderr: bytes) -> int | None:
    match = _ERROR_LINE.search(stderr)
    return int(match.group(1)) if match else None


def context_lines(text: str, line: int, *, radius: int = 3) -> str:
    """The lines around ``line`` (1-based), the failing one marked, for the log."""
    lines = text.splitlines()
    start, end = max(1, line - radius), min(len(lines), line + radius)
    return "\n".join(
        f"{'>' if number == line else ' '} {number:6d}  {lines[number - 1]}"
        for number in range(start, end + 1)
    )


def tool(backend: str, name: str) -> str:
    """Binary name for a backend: tool("nft", "save") == "iptables-nft-save"."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown iptables backend {backend!r}; use one of {BACKENDS}")
    return f"iptables-{backend}" if name == "iptables" else f"iptables-{backend}-{name}"


def _count_rules(save_output: bytes) -> int:
    return sum(1 for line in save_output.splitlines() if line.startswith(b"-"))


def detect_backend(*, netns: str | None = None) -> str:
    """The backend the host already uses; legacy when neither has any rule."""
    counts = {}
    for backend in BACKENDS:
        try:
            result = commands.run_sync([tool(backend, "save")], netns=netns)
        except FileNotFoundError:
            counts[backend] = -1
            continue
        counts[backend] = _count_rules(result.stdout) if result.ok else -1
    choice = "nft" if counts["nft"] > counts["legacy"] else "legacy"
    log.info(
        "iptables backend %s (rules: legacy=%d nft=%d)", choice, counts["legacy"], counts["nft"]
    )
    return choice


Runner = Callable[..., Awaitable[CommandResult]]


class Iptables:
    """The proxy's handle on one iptables backend in one network namespace."""

    def __init__(
        self, backend: str, *, netns: str | None = None, runner: Runner = commands.run
    ) -> None:
        tool(backend, "save")  # validates the name
        self.backend = backend
        self.netns = netns
        self._run = runner

    async def restore(self, text: str) -> None:
        """Apply restore input in one transaction; RestoreError with the failing line."""
        argv = [tool(self.backend, "restore"), "--noflush", *WAIT_ARGS]
        result = await self._run(argv, input_bytes=text.encode(), netns=self.netns)
        if result.ok:
            return
        line = failing_line(result.stderr)
        context = context_lines(text, line) if line else ""
        stderr = [
            text_line
            for text_line in result.stderr.decode(errors="replace").splitlines()
            if text_line.strip() and not text_line.startswith(("Ignoring", "Try "))
        ]
        message = f"iptables-restore ({self.backend}) failed: {'; '.join(stderr)}"
        raise RestoreError(message, line=line, context=context)

    async def chain_names(self, table: str) -> set[str]:
        """Names of all chains in a table (names only; rules are never read back)."""
        result = await self._run([tool(self.backend, "save"), "-t", table], netns=self.netns)
        if not result.ok:
            raise CommandError(f"{tool(self.backend, 'save')} -t {table}: {result.stderr!r}")
        return {
            line[1:].split(b" ", 1)[0].decode()
            for line in result.stdout.splitlines()
            if line.startswith(b":")
        }

    async def ensure_jump_rules(self) -> None:
        """Insert each missing jump from a built-in chain into ours (first position)."""
        binary = tool(self.backend, "iptables")
        for rule in JUMP_RULES:
            base = [binary, *WAIT_ARGS, "-t", rule.table]
            check = await self._run([*base, "-C", rule.chain, *rule.args()], netns=self.netns)
            if check.ok:
                continue
            insert = await self._run([*base, "-I", rule.chain, *rule.args()], netns=self.netns)
            if not insert.ok:
                raise CommandError(
                    f"could not add jump {rule.chain} -> {rule.target} in table {rule.table}:"
                    f" {insert.stderr.decode(errors='replace').strip()}"
                )


def remove_all(backend: str, *, netns: str | None = None) -> bool:
    """Delete our jump rules and every chain ours by name; True if anything was removed.

    Idempotent and blind to everything not named KEEL-: the ``--cleanup`` action.
    """
    binary = tool(backend, "iptables")
    removed = False
    for rule in JUMP_RULES:
        argv = [binary, *WAIT_ARGS, "-t", rule.table, "-D", rule.chain, *rule.args()]
        while commands.run_sync(argv, netns=netns).ok:  # duplicates are removed too
            removed = True
    for table in ("filter", "nat"):
        saved = commands.run_sync([tool(backend, "save"), "-t", table], netns=netns)
        if not saved.ok:
            continue
        ours = sorted(
            name
            for line in saved.stdout.decode().splitlines()
            if line.startswith(":") and names.is_our_chain(name := line[1:].split(" ", 1)[0])
        )
        if not ours:
            continue
        text = "\n".join(
            [
                f"*{table}",
                *(f":{c} - [0:0]" for c in ours),
                *(f"-X {c}" for c in ours),
                "COMMIT",
                "",
            ]
        )
        result = commands.run_sync(
            [tool(backend, "restore"), "--noflush", *WAIT_ARGS],
            input_bytes=text.encode(),
            netns=netns,
        )
        if not result.ok:
            raise CommandError(f"removing {table} chains failed: {result.stderr.decode().strip()}")
        removed = True
    return removed
