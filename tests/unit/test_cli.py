"""The CLI's error contract (INTERFACE.md): one line on stderr, exit code 2 for usage and
1 for runtime failures, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

KEELSON = Path(sys.executable).with_name("keelson")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KEELSON), *args], capture_output=True, text=True, timeout=60)


def test_version() -> None:
    result = run("version")
    assert result.returncode == 0
    assert result.stdout.startswith("keelson ")


@pytest.mark.parametrize(("args", "code", "words"), [
    (("apiserver",), 2, "--data-dir"),                      # missing required flag
    (("apiserver", "--data-dir", "/tmp/x", "--bogus"), 2, "unrecognized arguments"),
    (("apiserver", "--data-dir", "/tmp/kt-cli", "--service-cluster-ip-range", "10.96.0.0/33"),
     2, "--service-cluster-ip-range"),
    (("proxy", "--mode", "nftables"), 2, "nftables"),
    (("proxy",), 2, "--kubeconfig is required"),
    (("proxy", "--kubeconfig", "/nonexistent/kubeconfig"), 1, "/nonexistent/kubeconfig"),
    (("agent", "--kubeconfig", "/nonexistent/kubeconfig"), 1, "/nonexistent/kubeconfig"),
    (("agent",), 2, "--kubeconfig"),
])
def test_errors_are_one_line_with_the_right_exit_code(args: tuple[str, ...], code: int,
                                                      words: str) -> None:
    result = run(*args)
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert words in lines[0]
    assert "Traceback" not in result.stderr
