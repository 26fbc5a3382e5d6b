"""Helpers shared by the benchmark scripts: a throw-away keelson process, percentiles, RSS.

A benchmark owns everything it measures: it starts its own `keelson` process on a free
loopback port inside a fresh temporary directory and ends exactly that process, by PID,
when it is done (also when the benchmark fails). Nothing here talks to anything but
127.0.0.1.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from apiclient.kubeconfig import load_kubeconfig

__all__ = [
    "KeelsonProcess",
    "cpu_seconds",
    "free_port",
    "machine_summary",
    "percentile",
    "rss_bytes",
    "start_apiserver",
]

_KEELSON = Path(sys.executable).with_name("keelson")
_READY_MARKER = "keelson apiserver ready:"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class KeelsonProcess:
    """One keelson process this benchmark started; `stop()` ends it by its PID only."""

    popen: subprocess.Popen
    data_dir: Path
    port: int
    log_path: Path
    owns_data_dir: bool = True
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "admin.kubeconfig"

    def ssl_context(self) -> ssl.SSLContext:
        """The client TLS context of the admin kubeconfig (CA + admin client cert)."""
        return load_kubeconfig(self.kubeconfig).ssl_context()

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; removes the data dir if ours."""
        if self._stopped:
            return
        self._stopped = True
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait()
        if self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> KeelsonProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_apiserver(
    *,
    data_dir: Path | None = None,
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    ready_timeout: float = 60.0,
) -> KeelsonProcess:
    """Start `keelson apiserver` on a free 127.0.0.1 port; return once it printed ready.

    Without `data_dir` a fresh temporary directory is used and removed by `stop()`.
    `extra_env` is added to this process's environment (e.g. allocator settings to compare).
    """
    owns_data_dir = data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="keelbench-")) if data_dir is None else data_dir
    port = free_port()
    log_path = data_dir / "apiserver.log"
    # Without controllers nothing creates a namespace's `default` ServiceAccount, so the
    # ServiceAccount admission plugin (which would refuse the pods) goes too.
    if "--disable-controllers" in extra_args and "--disable-admission-plugins" not in extra_args:
        extra_args = (*extra_args, "--disable-admission-plugins", "ServiceAccount")
    command = [
        str(_KEELSON), "apiserver",
        "--data-dir", str(data_dir),
        "--secure-port", str(port),
        "--bind-address", "127.0.0.1",
        *extra_args,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(extra_env or {})}
        )
    process = KeelsonProcess(
        popen=popen, data_dir=data_dir, port=port, log_path=log_path, owns_data_dir=owns_data_dir
    )
    deadline = time.monotonic() + ready_timeout
    while _READY_MARKER not in log_path.read_text(errors="replace"):
        if popen.poll() is not None or time.monotonic() > deadline:
            output = log_path.read_text(errors="replace")[-2000:]
            process.stop()
            raise RuntimeError(f"keelson apiserver did not become ready; its output:\n{output}")
        time.sleep(0.05)
    return process


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (fraction in [0, 1]) of `values`; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, in bytes."""
    return psutil.Process(pid).memory_info().rss


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (threads included)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def machine_summary() -> str:
    """One line naming what the figures were measured on, and how busy it was already.

    Takes half a second: the CPU share other processes used is sampled over that time (the
    load average alone misleads, as it also counts processes waiting on I/O or locks).
    """
    memory_gib = psutil.virtual_memory().total / 2**30
    busy = psutil.cpu_percent(interval=0.5)
    load_1min, _, _ = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"{memory_gib:.0f} GiB RAM, Python {platform.python_version()}, "
        f"Linux {platform.release()}; CPU {busy:.0f}% busy, load average {load_1min:.1f}"
    )
