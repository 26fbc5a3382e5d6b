"""Applying rendered rules with iptables-restore, and choosing the iptables backend.

The write path is one ``iptables-restore --noflush`` transaction per sync (counters off, the
xtables lock waited for up to 5 s): atomic per table, and by far the fastest way to load
100,000 rules (figures in docs/proxy.md). Jumps from the
built-in chains are added (``-I``) in that same transaction when the table's iptables-save
output lacks them; only our own chains and our own jump rules are ever deleted.

Backend: legacy or nft, whichever the host already uses (more rules in its ``-save`` output),
legacy when both are empty, as kube-proxy's iptables wrapper decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import shlex
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterable

from proxy import commands
from proxy.commands import CommandResult
from proxy.iptables import names
from proxy.iptables.render import JUMP_RULES

log = logging.getLogger(__name__)

BACKENDS = ("legacy", "nft")
WAIT_ARGS = ("-w", "5")  # wait up to 5 s for the xtables lock instead of failing at once
_ERROR_LINE = re.compile(rb"(?:Error occurred at line: |line )(\d+)(?: failed)?")


class RestoreError(Exception):
    """iptables-restore rejected the input; ``line`` is the 1-based failing line or None."""

    def __init__(self, message: str, *, line: int | None, context: str) -> None:
        super().__init__(message)
        self.line = line
        self.context = context


class CommandError(Exception):
    """An iptables command other than restore failed."""


_BATCH_CHARS = 256 * 1024
_MAX_QUEUED = 8  # batches waiting for the writer thread


def _pump(process: subprocess.Popen[bytes], batches: queue.SimpleQueue[bytes | None]) -> None:
    """Writer thread: feed batches to iptables-restore until None; after the reader is gone
    keep taking batches (and drop them) so the producer never blocks."""
    assert process.stdin is not None
    alive = True
    while (batch := batches.get()) is not None:
        if alive:
            try:
                process.stdin.write(batch)
            except (BrokenPipeError, ConnectionResetError):
                alive = False
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.close()


def _finish(process: subprocess.Popen[bytes], writer: threading.Thread) -> bytes:
    writer.join()
    assert process.stderr is not None
    stderr = process.stderr.read()
    process.wait()
    return stderr


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


def split_tables(saved: str) -> dict[str, str]:
    """iptables-save output of all tables -> {table: its part}; absent tables are ""."""
    tables: dict[str, list[str]] = {"filter": [], "nat": []}
    current: list[str] | None = None
    for line in saved.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), [])
        if current is not None:
            current.append(line)
    return {table: "\n".join(lines) for table, lines in tables.items()}


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

    async def restore(self, chunks: Iterable[str]) -> None:
        """Apply restore input (``chunks`` joined by newlines) in one transaction.

        The chunks are consumed on the calling thread (a lazy producer renders them there)
        and written to iptables-restore by a writer thread, whose blocking writes release
        the GIL: rendering and iptables-restore's parsing (most of its time) overlap. The
        chunks are always consumed to the end, even when iptables-restore exits early, so
        a producer's bookkeeping completes. Raises RestoreError with the failing line.
        """
        argv = [tool(self.backend, "restore"), "--noflush", *WAIT_ARGS]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        batches: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        writer = threading.Thread(target=_pump, args=(process, batches), daemon=True)
        writer.start()
        # The sent bytes are kept for the error context, in a few large blocks: keeping the
        # chunks themselves would pin ~100,000 small strings until the end of the sync,
        # interleaved with the caches rendering fills, and fragment the heap (measured:
        # ~10 MB more RSS after a full sync at 10,000 Services).
        sent: list[bytes] = []
        batch: list[str] = []
        size = 0
        try:
            for chunk in chunks:
                batch.append(chunk)
                size += len(chunk)
                if size >= _BATCH_CHARS:
                    sent.append(("\n".join(batch) + "\n").encode())
                    batches.put(sent[-1])
                    batch, size = [], 0
                    while batches.qsize() > _MAX_QUEUED:  # bounded memory, responsive loop
                        await asyncio.sleep(0.002)
            sent.append("\n".join(batch).encode())
            batches.put(sent[-1])
        finally:
            batches.put(None)
        stderr = await asyncio.to_thread(_finish, process, writer)
        if process.returncode == 0:
            return
        line = failing_line(stderr)
        context = context_lines(b"".join(sent).decode(), line) if line else ""
        messages = [
            text_line
            for text_line in stderr.decode(errors="replace").splitlines()
            if text_line.strip() and not text_line.startswith(("Ignoring", "Try "))
        ]
        message = f"iptables-restore ({self.backend}) failed: {'; '.join(messages)}"
        raise RestoreError(message, line=line, context=context)

    async def save(self) -> dict[str, str]:
        """iptables-save output per table, in one process (read for chain names and jump
        rules only, never to decide which rules to write)."""
        result = await self._run([tool(self.backend, "save")], netns=self.netns)
        if not result.ok:
            raise CommandError(f"{tool(self.backend, 'save')}: {result.stderr!r}")
        return split_tables(result.stdout.decode())

    async def canary_present(self) -> bool:
        """True while the canary chain written by the last full kernel sync exists."""
        argv = [tool(self.backend, "iptables"), *WAIT_ARGS, "-t", names.CANARY_TABLE,
                "-S", names.CANARY]  # fmt: skip
        return (await self._run(argv, netns=self.netns)).ok


def remove_all(backend: str, *, netns: str | None = None) -> bool:
    """Delete our jump rules and every chain ours by name; True if anything was removed.

    Idempotent and blind to everything not named KEEL-: the ``--cleanup`` action.
    """
    binary = tool(backend, "iptables")
    removed = False
    for rule in JUMP_RULES:
        argv = [binary, *WAIT_ARGS, "-t", rule.table, "-D", rule.chain, *shlex.split(rule.spec())]
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
