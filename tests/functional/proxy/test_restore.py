"""The iptables applier against real iptables-restore in a private namespace."""

import os
import subprocess
import uuid

import pytest

from proxy.iptables.restore import Iptables, RestoreError, detect_backend

pytestmark = pytest.mark.root


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = f"kt-{uuid.uuid4().hex[:8]}-rs"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def run(netns, *argv):
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True)


async def test_failing_line_is_reported_with_context_and_nothing_is_applied(netns):
    chunks = ["*nat", ":KEEL-SERVICES - [0:0]", "-A KEEL-SERVICES -j KEEL-MISSING", "COMMIT", ""]
    with pytest.raises(RestoreError) as caught:
        await Iptables("legacy", netns=netns).restore(iter(chunks))
    assert caught.value.line == 3
    assert "> " in caught.value.context and "KEEL-MISSING" in caught.value.context
    assert "KEEL-SERVICES" not in run(netns, "iptables-legacy-save", "-t", "nat").stdout


async def test_large_input_is_streamed_in_one_transaction(netns):
    rules = [f"-A KEEL-SERVICES -d 10.96.{i // 250}.{i % 250} -j RETURN" for i in range(20000)]
    await Iptables("legacy", netns=netns).restore(iter(["*nat", ":KEEL-SERVICES - [0:0]", *rules,
                                                        "COMMIT", ""]))  # fmt: skip
    saved = run(netns, "iptables-legacy-save", "-t", "nat").stdout
    assert saved.count("-A KEEL-SERVICES") == 20000


def test_backend_detection_follows_the_rules_already_present(netns):
    assert detect_backend(netns=netns) == "legacy"  # nothing anywhere: legacy
    run(netns, "iptables-nft", "-A", "INPUT", "-s", "192.0.2.1", "-j", "ACCEPT")
    assert detect_backend(netns=netns) == "nft"
    run(netns, "iptables-legacy", "-A", "INPUT", "-s", "192.0.2.1", "-j", "ACCEPT")
    run(netns, "iptables-legacy", "-A", "INPUT", "-s", "192.0.2.2", "-j", "ACCEPT")
    assert detect_backend(netns=netns) == "legacy"
