"""DockerRuntime against the real dockerd: what the pod workers rely on actually holds."""

from __future__ import annotations

import asyncio
import time

import pytest

from nodeagent.runtime.interface import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_UID,
    LABEL_TYPE,
    ContainerConfig,
    ContainerStartError,
    ContainerState,
    ImageNotFoundError,
    ImagePullError,
    SandboxConfig,
)
from tests.e2e.nodeagent.conftest import BUSYBOX, PAUSE

pytestmark = pytest.mark.docker


async def _sandbox(runtime, uid: str) -> str:
    return await runtime.run_sandbox(
        SandboxConfig(
            name=f"{uid}-pause",
            image=PAUSE,
            labels={LABEL_POD_UID: uid, LABEL_TYPE: "sandbox"},
            hostname="web-0",
        )
    )


def _config(uid: str, sandbox_id: str, name: str, script: str, **extra) -> ContainerConfig:
    return ContainerConfig(
        name=f"{uid}-{name}",
        image=BUSYBOX,
        sandbox_id=sandbox_id,
        hostname="web-0",
        labels={LABEL_POD_UID: uid, LABEL_CONTAINER_NAME: name, LABEL_TYPE: "container"},
        entrypoint=["sh", "-c"],
        args=[script],
        **extra,
    )


async def _wait_exit(runtime, container_id: str, *, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await runtime.inspect_container(container_id)
        if info.state is ContainerState.EXITED:
            return info
        await asyncio.sleep(0.1)
    raise AssertionError(f"{container_id} did not exit")


async def test_containers_share_the_sandbox_network_and_hostname(runtime, pod_uid):
    sandbox = await _sandbox(runtime, pod_uid)
    server = await runtime.create_container(
        _config(pod_uid, sandbox, "server", "echo hi-from-server | nc -l -p 8080")
    )
    await runtime.start_container(server)
    client = await runtime.create_container(
        _config(
            pod_uid,
            sandbox,
            "client",
            "sleep 0.5; hostname; nc 127.0.0.1 8080 </dev/null; echo $GREETING",
            env={"GREETING": "env-works"},
        )
    )
    await runtime.start_container(client)

    info = await _wait_exit(runtime, client)

    assert info.exit_code == 0
    assert (await runtime.container_logs(client)).decode().split() == [
        "web-0",
        "hi-from-server",
        "env-works",
    ]
    listed = await runtime.list_containers(labels={LABEL_POD_UID: pod_uid})
    assert {c.id for c in listed} == {sandbox, server, client}
    assert [c.id for c in listed if c.is_sandbox] == [sandbox]


async def test_stop_sends_sigterm_then_kills_after_grace(runtime, pod_uid):
    sandbox = await _sandbox(runtime, pod_uid)
    polite = await runtime.create_container(
        _config(
            pod_uid,
            sandbox,
            "polite",
            "trap 'echo got-term; exit 0' TERM; while true; do sleep 0.1; done",
        )
    )
    stubborn = await runtime.create_container(
        _config(
            pod_uid,
            sandbox,
            "stubborn",
            "trap 'echo ignoring' TERM; while true; do sleep 0.1; done",
        )
    )
    for container in (polite, stubborn):
        await runtime.start_container(container)
    await asyncio.sleep(0.3)

    started = time.monotonic()
    await runtime.stop_container(polite, timeout=5)
    polite_took = time.monotonic() - started
    started = time.monotonic()
    await runtime.stop_container(stubborn, timeout=1)
    stubborn_took = time.monotonic() - started

    assert (await runtime.inspect_container(polite)).exit_code == 0
    assert b"got-term" in await runtime.container_logs(polite)
    assert polite_took < 3
    assert (await runtime.inspect_container(stubborn)).exit_code == 137
    assert 0.9 <= stubborn_took < 5


async def test_exec_reports_exit_code_and_output(runtime, pod_uid):
    sandbox = await _sandbox(runtime, pod_uid)
    container = await runtime.create_container(_config(pod_uid, sandbox, "c", "sleep 30"))
    await runtime.start_container(container)

    result = await runtime.exec_in_container(container, ["sh", "-c", "echo out; exit 3"], timeout=5)

    assert result.exit_code == 3
    assert result.output.strip() == b"out"


async def test_errors_are_domain_exceptions(runtime, pod_uid):
    sandbox = await _sandbox(runtime, pod_uid)

    with pytest.raises(ImageNotFoundError):
        await runtime.create_container(
            ContainerConfig(
                name=f"{pod_uid}-x",
                image="localhost/keelson/missing:1",
                labels={LABEL_POD_UID: pod_uid},
                sandbox_id=sandbox,
                hostname="h",
            )
        )
    bad = await runtime.create_container(
        ContainerConfig(
            name=f"{pod_uid}-bad",
            image=BUSYBOX,
            labels={LABEL_POD_UID: pod_uid},
            sandbox_id=sandbox,
            hostname="h",
            entrypoint=["/no/such/binary"],
        )
    )
    with pytest.raises(ContainerStartError, match="no/such/binary"):
        await runtime.start_container(bad)
    with pytest.raises(ImagePullError):
        await runtime.pull_image("localhost/keelson/missing:1")
    assert await runtime.image_present(BUSYBOX)
    assert not await runtime.image_present("localhost/keelson/missing:1")


async def test_events_report_container_start_and_death(runtime, pod_uid):
    seen: list[tuple[str, str]] = []

    async def collect():
        async for event in runtime.events():
            if event.pod_uid == pod_uid:
                seen.append((event.container_id, event.action))

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0.3)
    sandbox = await _sandbox(runtime, pod_uid)
    container = await runtime.create_container(_config(pod_uid, sandbox, "c", "exit 4"))
    await runtime.start_container(container)
    await _wait_exit(runtime, container)
    await asyncio.sleep(0.3)
    collector.cancel()

    assert (sandbox, "start") in seen
    assert (container, "start") in seen
    assert (container, "die") in seen


async def test_images_listing_and_in_use_detection(runtime, pod_uid):
    sandbox = await _sandbox(runtime, pod_uid)

    images = {tag: image for image in await runtime.list_images() for tag in image.tags}
    in_use = await runtime.all_container_image_ids()

    assert images[PAUSE].size > 0 and images[BUSYBOX].size > 0
    assert images[PAUSE].id in in_use
    assert (await runtime.inspect_container(sandbox)).image_id == images[PAUSE].id
