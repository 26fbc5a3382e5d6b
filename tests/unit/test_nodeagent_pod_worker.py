"""Pod workers against the stateful fake runtime and the fake API server.

Each test sets pods, lets the real workers and PLEG run, and asserts what a user would see:
containers in the runtime, the pod's status in the API, IP allocations, events.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from apiclient.client import ApiClient
from apiclient.resources import EVENTS, PODS
from apiclient.testing import FakeApiServer
from nodeagent.api import PodApi
from nodeagent.metrics import AgentMetrics
from nodeagent.network.bridge import PodInterface
from nodeagent.network.ipam import HostLocalIpam
from nodeagent.network.manager import PodNetworkManager
from nodeagent.pleg import Pleg
from nodeagent.pod_worker import NodeContext, PodWorkers, kubelet_backoff
from nodeagent.runtime.fake import FakeRuntime
from nodeagent.runtime.interface import ContainerState

PAUSE = "localhost/keelson/pause:1"
BUSYBOX = "localhost/keelson/busybox:1"


class FakeBridge:
    gateway = "10.244.9.1"

    def __init__(self) -> None:
        self.pods: dict[str, str] = {}
        self.fail_next = False

    def ensure_bridge(self) -> None:
        return None

    def setup_pod(self, *, pod_uid: str, netns_path: str, address: str) -> PodInterface:
        if self.fail_next:
            self.fail_next = False
            raise OSError("injected netlink failure")
        self.pods[pod_uid] = address
        return PodInterface("keelx", address, 24, self.gateway)

    def teardown_pod(self, *, pod_uid: str) -> bool:
        return self.pods.pop(pod_uid, None) is not None

    def pod_veths(self) -> set[str]:
        return set(self.pods)


@dataclass
class Node:
    server: FakeApiServer
    runtime: FakeRuntime
    bridge: FakeBridge
    ipam: HostLocalIpam
    workers: PodWorkers
    context: NodeContext

    def pod(self, name: str, namespace: str = "default") -> dict | None:
        return self.server.objects.get((PODS, f"{namespace}/{name}"))

    def events(self, reason: str) -> list[dict]:
        return [
            o for (r, _), o in self.server.objects.items() if r == EVENTS and o["reason"] == reason
        ]


async def eventually(check: Callable[[], object], *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (KeyError, TypeError, IndexError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.02)


def make_pod(name: str, containers: list[dict], **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
        "spec": {"nodeName": "node-a", "containers": containers, **spec},
    }


def container(name: str, *command: str, image_ref: str = BUSYBOX, **extra) -> dict:
    spec = {"name": name, "image": image_ref, **extra}
    if command:
        spec["command"] = list(command)
    return spec


async def build_node(
    server: FakeApiServer, tmp_path, runtime: FakeRuntime | None = None, ipam_dir=None
) -> tuple[Node, Pleg, asyncio.Task, ApiClient]:
    runtime = runtime or FakeRuntime(images={PAUSE, BUSYBOX})
    bridge = FakeBridge()
    ipam = HostLocalIpam(ipam_dir or tmp_path, "10.244.9.0/24")

    async def live() -> set[str]:
        return {
            s.id
            for s in await runtime.list_containers()
            if s.is_sandbox and s.state is ContainerState.RUNNING
        }

    client = ApiClient(server.config())
    context = NodeContext(
        runtime=runtime,
        network=PodNetworkManager(bridge=bridge, ipam=ipam, live_sandboxes=live),
        api=PodApi(client, node_name="node-a"),
        node_name="node-a",
        host_ip="192.0.2.10",
        pod_infra_image=PAUSE,
        data_dir=tmp_path,
        metrics=AgentMetrics(CollectorRegistry()),
        restart_backoff=kubelet_backoff(),
        pull_backoff=kubelet_backoff(),
    )
    workers = PodWorkers(context)
    pleg = Pleg(runtime, workers.wake, period=0.05)
    task = asyncio.create_task(pleg.run())
    return Node(server, runtime, bridge, ipam, workers, context), pleg, task, client


@pytest.fixture
async def node(tmp_path) -> AsyncIterator[Node]:
    async with FakeApiServer() as server:
        built, _pleg, task, client = await build_node(server, tmp_path)
        yield built
        task.cancel()
        await built.workers.stop()
        await built.context.api.close()
        await client.close()


def submit(node: Node, pod: dict) -> dict:
    stored = node.server.seed(PODS, pod)
    node.workers.update_pod(stored)
    return stored


def status(node: Node, name: str) -> dict:
    return node.pod(name)["status"]


def by_name(statuses: list[dict]) -> dict[str, dict]:
    return {s["name"]: s for s in statuses}


async def test_pod_runs_with_ip_and_truthful_status(node):
    pod = submit(
        node, make_pod("web", [container("a", "sleep", "1000"), container("b", "sleep", "1000")])
    )

    await eventually(lambda: status(node, "web")["phase"] == "Running")

    st = status(node, "web")
    uid = pod["metadata"]["uid"]
    assert st["podIP"] == node.bridge.pods[uid] == "10.244.9.2"
    assert st["hostIP"] == "192.0.2.10"
    conditions = {c["type"]: c["status"] for c in st["conditions"]}
    assert conditions == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    running_ids = {f"docker://{c.id}" for c in node.runtime.running(pod_uid=uid)}
    statuses = by_name(st["containerStatuses"])
    assert {s["containerID"] for s in statuses.values()} <= running_ids
    assert all("running" in s["state"] and s["ready"] for s in statuses.values())
    assert len(node.runtime.running(pod_uid=uid)) == 3  # sandbox + two containers
    assert {e["reason"] for e in node.events("Started")} == {"Started"}


async def test_env_field_refs_and_hosts_file(node):
    pod = submit(
        node,
        make_pod(
            "envy",
            [
                container(
                    "c",
                    "sh",
                    "-c",
                    "echo $(GREETING)",
                    env=[
                        {"name": "GREETING", "value": "hi"},
                        {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    ],
                    resources={
                        "requests": {"cpu": "250m"},
                        "limits": {"cpu": "500m", "memory": "64Mi"},
                    },
                )
            ],
        ),
    )
    await eventually(lambda: status(node, "envy")["phase"] == "Running")

    (app,) = [
        c
        for c in node.runtime.containers.values()
        if c.info.container_name == "c" and c.info.pod_uid == pod["metadata"]["uid"]
    ]
    config = app.config
    assert config.entrypoint == ["sh", "-c", "echo hi"]
    assert config.env == {"GREETING": "hi", "ME": "envy", "IP": "10.244.9.2"}
    assert (config.cpu_shares, config.cpu_quota, config.memory_limit) == (256, 50000, 64 << 20)
    hosts = next(m for m in config.mounts if m.container_path == "/etc/hosts")
    assert "10.244.9.2\tenvy" in Path(hosts.host_path).read_text()


async def test_restart_policy_never_succeeds_and_releases_ip(node):
    pod = submit(node, make_pod("job", [container("c", "true")], restartPolicy="Never"))
    uid = pod["metadata"]["uid"]
    await eventually(lambda: len(node.runtime.running(pod_uid=uid)) == 2)
    app = next(c for c in node.runtime.running(pod_uid=uid) if c.container_name == "c")

    node.runtime.exit_container(app.id, exit_code=0)

    await eventually(lambda: status(node, "job")["phase"] == "Succeeded")
    await eventually(lambda: node.ipam.allocations() == {})
    assert node.runtime.running(pod_uid=uid) == []
    assert uid not in node.bridge.pods
    terminated = status(node, "job")["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")


async def test_never_policy_failure_gives_failed_phase(node):
    pod = submit(node, make_pod("bad-job", [container("c", "false")], restartPolicy="Never"))
    uid = pod["metadata"]["uid"]
    await eventually(lambda: len(node.runtime.running(pod_uid=uid)) == 2)
    app = next(c for c in node.runtime.running(pod_uid=uid) if c.container_name == "c")

    node.runtime.exit_container(app.id, exit_code=3)

    await eventually(lambda: status(node, "bad-job")["phase"] == "Failed")
    terminated = status(node, "bad-job")["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")


async def test_on_failure_restarts_failures_but_not_success(node):
    pod = submit(node, make_pod("retry", [container("c", "x")], restartPolicy="OnFailure"))
    uid = pod["metadata"]["uid"]
    await eventually(lambda: len(node.runtime.running(pod_uid=uid)) == 2)
    first = next(c for c in node.runtime.running(pod_uid=uid) if c.container_name == "c")

    node.runtime.exit_container(first.id, exit_code=1)
    await eventually(
        lambda: (
            status(node, "retry")["containerStatuses"][0]["restartCount"] == 1
            and "running" in status(node, "retry")["containerStatuses"][0]["state"]
        )
    )
    second = next(c for c in node.runtime.running(pod_uid=uid) if c.container_name == "c")
    node.runtime.exit_container(second.id, exit_code=0)

    await eventually(lambda: status(node, "retry")["phase"] == "Succeeded")


async def test_crash_loop_backs_off_and_keeps_pod_running(node):
    pod = submit(node, make_pod("crashy", [container("c", "x")]))
    uid = pod["metadata"]["uid"]

    def app_running():
        return [c for c in node.runtime.running(pod_uid=uid) if c.container_name == "c"]

    await eventually(lambda: len(app_running()) == 1)
    node.runtime.exit_container(app_running()[0].id, exit_code=2)
    await eventually(lambda: len(app_running()) == 1 and app_running()[0].restart_count == 1)
    node.runtime.exit_container(app_running()[0].id, exit_code=2)

    await eventually(
        lambda: (
            status(node, "crashy")["containerStatuses"][0]["state"].get("waiting", {}).get("reason")
            == "CrashLoopBackOff"
        )
    )
    st = status(node, "crashy")
    entry = st["containerStatuses"][0]
    assert "back-off 10s" in entry["state"]["waiting"]["message"]
    assert entry["lastState"]["terminated"]["exitCode"] == 2
    assert st["phase"] == "Running"
    await asyncio.sleep(0.5)
    assert app_running() == []  # still backing off
    assert node.events("BackOff")


async def test_missing_image_and_bad_volume_do_not_hold_up_other_pods(node):
    submit(node, make_pod("noimage", [container("c", image_ref="localhost/keelson/nope:1")]))
    submit(
        node,
        make_pod(
            "novol",
            [
                container(
                    "c", "sleep", "1", volumeMounts=[{"name": "missing", "mountPath": "/data"}]
                )
            ],
        ),
    )
    submit(node, make_pod("fine", [container("c", "sleep", "1000")]))

    await eventually(lambda: status(node, "fine")["phase"] == "Running")
    await eventually(
        lambda: (
            status(node, "noimage")["containerStatuses"][0]["state"]["waiting"]["reason"]
            in ("ErrImagePull", "ImagePullBackOff")
        )
    )
    await eventually(
        lambda: (
            status(node, "novol")["containerStatuses"][0]["state"]["waiting"]["reason"]
            == "CreateContainerConfigError"
        )
    )
    assert (
        "names no volume"
        in status(node, "novol")["containerStatuses"][0]["state"]["waiting"]["message"]
    )
    assert status(node, "noimage")["phase"] == "Pending"
    assert node.runtime.pulls == ["localhost/keelson/nope:1"]


async def test_image_pull_backoff_after_first_failure(node):
    submit(
        node,
        make_pod(
            "noimage",
            [container("c", image_ref="localhost/keelson/nope:1", imagePullPolicy="Always")],
        ),
    )
    await eventually(lambda: node.events("Failed"))
    assert "localhost/keelson/nope:1" in node.events("Failed")[0]["message"]
    node.workers.wake(node.pod("noimage")["metadata"]["uid"])
    await eventually(
        lambda: (
            status(node, "noimage")["containerStatuses"][0]["state"]["waiting"]["reason"]
            == "ImagePullBackOff"
        )
    )
    assert node.runtime.pulls == ["localhost/keelson/nope:1"]


async def test_bad_command_reports_start_error(node):
    node.runtime.missing_commands.add("/no/such")
    submit(node, make_pod("badcmd", [container("c", "/no/such")], restartPolicy="Never"))

    await eventually(lambda: status(node, "badcmd")["phase"] == "Failed")
    terminated = status(node, "badcmd")["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "StartError"
    assert "executable file not found" in terminated["message"]


async def test_init_containers_run_in_order_before_app(node):
    pod = submit(
        node,
        make_pod(
            "init",
            [container("app", "sleep", "1000")],
            initContainers=[container("one", "true"), container("two", "true")],
        ),
    )
    uid = pod["metadata"]["uid"]

    def running_names():
        return sorted(
            c.container_name for c in node.runtime.running(pod_uid=uid) if c.container_name
        )

    await eventually(lambda: running_names() == ["one"])
    assert status(node, "init")["phase"] == "Pending"
    node.runtime.exit_container(node.runtime.running(pod_uid=uid)[-1].id, exit_code=0)
    await eventually(lambda: running_names() == ["two"])
    node.runtime.exit_container(
        next(c.id for c in node.runtime.running(pod_uid=uid) if c.container_name == "two"),
        exit_code=0,
    )
    await eventually(lambda: status(node, "init")["phase"] == "Running")
    assert running_names() == ["app"]
    inits = by_name(status(node, "init")["initContainerStatuses"])
    assert inits["one"]["state"]["terminated"]["reason"] == "Completed"


async def test_deletion_stops_everything_and_deletes_the_pod(node):
    pod = submit(
        node, make_pod("gone", [container("c", "sleep", "1000")], terminationGracePeriodSeconds=7)
    )
    uid = pod["metadata"]["uid"]
    await eventually(lambda: status(node, "gone")["phase"] == "Running")
    app = next(c for c in node.runtime.containers.values() if c.info.container_name == "c")

    deleting = {**node.pod("gone")}
    deleting["metadata"] = {
        **deleting["metadata"],
        "deletionTimestamp": "2030-01-01T00:00:00Z",
        "deletionGracePeriodSeconds": 7,
    }
    node.workers.update_pod(deleting)

    await eventually(lambda: node.pod("gone") is None)
    assert [c for c in node.runtime.containers.values() if c.info.pod_uid == uid] == []
    assert node.ipam.allocations() == {}
    assert uid not in node.bridge.pods
    assert 0 < app.stop_timeouts[0] <= 7


async def test_failed_network_setup_leaks_no_ip_and_retries(node):
    node.bridge.fail_next = True
    submit(node, make_pod("flaky", [container("c", "sleep", "1000")]))

    await eventually(lambda: node.events("FailedCreatePodSandBox"))
    await eventually(lambda: status(node, "flaky")["phase"] == "Running", timeout=10)
    assert len(node.ipam.allocations()) == 1
    assert (
        len(
            [
                c
                for c in node.runtime.containers.values()
                if c.info.labels.get("io.keelson.type") == "sandbox"
            ]
        )
        == 1
    )


async def test_restarted_agent_adopts_containers_and_removes_orphans(tmp_path):
    runtime = FakeRuntime(images={PAUSE, BUSYBOX})
    async with FakeApiServer() as server:
        first, _, task, client = await build_node(server, tmp_path, runtime)
        kept = submit(first, make_pod("kept", [container("c", "sleep", "1000")]))
        orphan = submit(first, make_pod("orphan", [container("c", "sleep", "1000")]))
        await eventually(
            lambda: (
                first.pod("kept")["status"]["phase"] == "Running"
                and first.pod("orphan")["status"]["phase"] == "Running"
            )
        )
        kept_uid, orphan_uid = kept["metadata"]["uid"], orphan["metadata"]["uid"]
        before = {c.id for c in runtime.running(pod_uid=kept_uid)}
        ip_before = first.pod("kept")["status"]["podIP"]
        task.cancel()
        await first.workers.stop()  # the agent dies; containers keep running
        await client.close()
        server.remove(PODS, "default/orphan")  # deleted while the agent was down

        second, _, task2, client2 = await build_node(server, tmp_path, runtime)
        second.bridge.pods = dict(first.bridge.pods)
        await second.workers.cleanup_orphans({kept["metadata"]["uid"]})
        second.workers.update_pod(server.objects[(PODS, "default/kept")])
        await asyncio.sleep(0.3)

        assert {c.id for c in runtime.running(pod_uid=kept_uid)} == before
        assert second.pod("kept")["status"]["podIP"] == ip_before
        assert [c for c in runtime.containers.values() if c.info.pod_uid == orphan_uid] == []
        assert list(second.ipam.allocations().values()) == [
            next(c.id for c in runtime.running(pod_uid=kept_uid) if c.name.startswith("keel_POD"))
        ]
        task2.cancel()
        await second.workers.stop()
        await second.context.api.close()
        await client2.close()


def exec_probe(command: str, **timing) -> dict:
    return {"exec": {"command": ["sh", "-c", command]}, "periodSeconds": 0.05, **timing}


async def test_failing_liveness_probe_restarts_the_container(node):
    node.runtime.exec_results[("sh", "-c", "check-alive")] = 1
    submit(
        node,
        make_pod(
            "sick",
            [
                container(
                    "c",
                    "sleep",
                    "1000",
                    livenessProbe=exec_probe("check-alive", failureThreshold=2),
                )
            ],
        ),
    )

    await eventually(lambda: status(node, "sick")["containerStatuses"][0]["restartCount"] >= 1)
    assert any("Liveness probe failed" in e["message"] for e in node.events("Unhealthy"))
    assert node.events("Killing")


async def test_readiness_probe_drives_ready_both_ways(node):
    node.runtime.exec_results[("sh", "-c", "check-ready")] = 1
    submit(
        node,
        make_pod(
            "shy", [container("c", "sleep", "1000", readinessProbe=exec_probe("check-ready"))]
        ),
    )

    def ready() -> str:
        conditions = status(node, "shy")["conditions"]
        return next(c["status"] for c in conditions if c["type"] == "Ready")

    await eventually(lambda: status(node, "shy")["phase"] == "Running")
    await asyncio.sleep(0.3)
    assert ready() == "False"
    node.runtime.exec_results[("sh", "-c", "check-ready")] = 0
    await eventually(lambda: ready() == "True")
    node.runtime.exec_results[("sh", "-c", "check-ready")] = 1
    await eventually(lambda: ready() == "False")
    assert status(node, "shy")["containerStatuses"][0]["restartCount"] == 0


async def test_changed_image_replaces_the_running_container(node):
    node.runtime.images.add("localhost/keelson/busybox:2")
    pod = submit(node, make_pod("upgrade", [container("c", "sleep", "1000")]))
    uid = pod["metadata"]["uid"]
    await eventually(lambda: status(node, "upgrade")["phase"] == "Running")

    updated = {**node.pod("upgrade")}
    updated["spec"] = {
        **updated["spec"],
        "containers": [container("c", "sleep", "1000", image_ref="localhost/keelson/busybox:2")],
    }
    node.server.objects[(PODS, "default/upgrade")]["spec"] = updated["spec"]
    node.workers.update_pod(updated)

    await eventually(
        lambda: (
            [c.image for c in node.runtime.running(pod_uid=uid) if c.container_name == "c"]
            == ["localhost/keelson/busybox:2"]
        )
    )
    await eventually(lambda: status(node, "upgrade")["containerStatuses"][0]["restartCount"] == 1)
    assert any("definition changed" in e["message"] for e in node.events("Killing"))
