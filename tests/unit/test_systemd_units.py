"""The shipped systemd units are valid (``systemd-analyze verify``) and start our commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = sorted((Path(__file__).resolve().parents[2] / "systemd").glob("*.service"))
KEELSON = Path(sys.executable).with_name("keelson")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_verifies(unit: Path, tmp_path: Path) -> None:
    # Point ExecStart at this checkout's console script: the installed path differs.
    text = unit.read_text().replace("/opt/keelson/.venv/bin/keelson", str(KEELSON))
    copy = tmp_path / unit.name
    copy.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in result.stderr.splitlines()
        if unit.name in line and "docker.service" not in line
    ]
    assert result.returncode == 0 and not problems, result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_runs_a_keelson_subcommand(unit: Path) -> None:
    exec_start = next(
        line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")
    )
    command = exec_start.split("=", 1)[1].split()
    assert command[0].endswith("/keelson")
    assert command[1] in ("apiserver", "agent", "proxy")
