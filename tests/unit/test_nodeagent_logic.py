"""Pure rules of the node agent: PLEG diff, back-off, pod phase/conditions, container specs."""

from __future__ import annotations

import pytest

from nodeagent.container_spec import (
    ContainerConfigError,
    build_container_config,
    cpu_and_memory,
    default_pull_policy,
    expand,
)
from nodeagent.pleg import EventType, PodLifecycleEvent, diff
from nodeagent.pod_worker import kubelet_backoff
from nodeagent.runtime.interface import LABEL_RESTART_COUNT, ContainerInfo, ContainerState
from nodeagent.status import StatusInput, Waiting, compute_pod_status, pod_phase

R, X, C = ContainerState.RUNNING, ContainerState.EXITED, ContainerState.CREATED


# -- PLEG ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (None, R, [EventType.STARTED]),
        (None, X, [EventType.DIED]),
        (None, C, [EventType.CHANGED]),
        (R, X, [EventType.DIED]),
        (R, None, [EventType.DIED, EventType.REMOVED]),
        (X, None, [EventType.REMOVED]),
        (X, R, [EventType.STARTED]),
        (R, R, []),
    ],
)
def test_pleg_diff_transitions(old, new, expected):
    before = {"pod": {"c1": old}} if old else {}
    after = {"pod": {"c1": new}} if new else {}
    assert [e.type for e in diff(before, after)] == expected


def test_pleg_diff_covers_every_pod_and_container():
    old = {"a": {"1": R, "2": R}, "b": {"3": R}}
    new = {"a": {"1": R, "2": X}, "c": {"4": R}}
    assert diff(old, new) == [
        PodLifecycleEvent("a", "2", EventType.DIED),
        PodLifecycleEvent("b", "3", EventType.DIED),
        PodLifecycleEvent("b", "3", EventType.REMOVED),
        PodLifecycleEvent("c", "4", EventType.STARTED),
    ]


# -- back-off --------------------------------------------------------------------------
def test_crash_loop_delays_double_to_the_cap_and_reset_after_long_run():
    backoff = kubelet_backoff()
    assert backoff.remaining("k", since=100, now=100) == 0  # first restart is immediate
    delays = []
    for _ in range(8):
        backoff.attempted("k", now=0)
        delays.append(backoff.current_delay("k"))
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]
    assert backoff.remaining("k", since=1000, now=1100) == 200
    backoff.ran_for("k", 599)
    assert backoff.current_delay("k") == 300
    backoff.ran_for("k", 600)
    assert backoff.remaining("k", since=1000, now=1000) == 0


# -- status ----------------------------------------------------------------------------
def info(cid: str, state: ContainerState, *, exit_code=None, restarts=0) -> ContainerInfo:
    return ContainerInfo(
        id=cid,
        name=cid,
        image="img",
        image_id="sha256:abc",
        labels={LABEL_RESTART_COUNT: str(restarts)},
        state=state,
        exit_code=exit_code,
        started_at="2026-01-01T00:00:00Z" if state is not C else "",
        finished_at="2026-01-01T00:00:05Z" if state is X else "",
    )


POD = {
    "metadata": {"name": "p", "namespace": "default", "uid": "u"},
    "spec": {"containers": [{"name": "a", "image": "img"}, {"name": "b", "image": "img"}]},
}


def build(instances, *, waiting=None, ready=None, pod=POD, previous=None):
    return compute_pod_status(
        StatusInput(
            pod={**pod, "status": previous or {}},
            instances=instances,
            waiting=waiting or {},
            ready=ready or {},
            pod_ip="10.0.0.5",
            host_ip="192.0.2.1",
            now="2026-01-01T00:01:00Z",
        )
    )


def test_running_pod_status_has_ids_ip_and_ready_conditions():
    st = build({"a": [info("1", R)], "b": [info("2", R)]})
    assert st["phase"] == "Running"
    assert st["podIP"] == "10.0.0.5" and st["podIPs"] == [{"ip": "10.0.0.5"}]
    assert [s["containerID"] for s in st["containerStatuses"]] == ["docker://1", "docker://2"]
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"


def test_readiness_false_makes_pod_unready_but_running():
    st = build({"a": [info("1", R)], "b": [info("2", R)]}, ready={"b": False})
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert st["phase"] == "Running"
    assert (ready["status"], ready["reason"]) == ("False", "ContainersNotReady")
    assert ready["message"] == "containers with unready status: [b]"


def test_transition_time_is_kept_while_condition_unchanged():
    first = build({"a": [info("1", R)], "b": [info("2", R)]})
    again = compute_pod_status(
        StatusInput(
            pod={**POD, "status": first},
            instances={"a": [info("1", R)], "b": [info("2", R)]},
            waiting={},
            ready={},
            pod_ip="10.0.0.5",
            host_ip="192.0.2.1",
            now="2026-01-01T09:00:00Z",
        )
    )
    assert again == first


def test_crash_loop_shows_waiting_with_last_termination_and_running_phase():
    st = build(
        {
            "a": [info("3", X, exit_code=1, restarts=2), info("2", X, exit_code=1)],
            "b": [info("4", R)],
        },
        waiting={"a": Waiting("CrashLoopBackOff", "back-off 20s")},
    )
    a = st["containerStatuses"][0]
    assert a["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}}
    assert a["lastState"]["terminated"]["exitCode"] == 1
    assert a["restartCount"] == 2
    assert st["phase"] == "Running"


@pytest.mark.parametrize(
    ("policy", "codes", "phase"),
    [
        ("Never", (0, 0), "Succeeded"),
        ("Never", (0, 1), "Failed"),
        ("OnFailure", (0, 0), "Succeeded"),
        ("OnFailure", (0, 1), "Running"),
        ("Always", (0, 0), "Running"),
    ],
)
def test_phase_of_finished_containers_follows_restart_policy(policy, codes, phase):
    pod = {**POD, "spec": {**POD["spec"], "restartPolicy": policy}}
    st = build(
        {"a": [info("1", X, exit_code=codes[0])], "b": [info("2", X, exit_code=codes[1])]}, pod=pod
    )
    assert st["phase"] == phase


def test_pending_while_containers_are_created_or_init_incomplete():
    assert build({"a": [info("1", R)]})["phase"] == "Pending"  # b not created yet
    pod = {**POD, "spec": {**POD["spec"], "initContainers": [{"name": "i", "image": "img"}]}}
    st = build({"i": [info("9", R)]}, pod=pod)
    initialized = next(c for c in st["conditions"] if c["type"] == "Initialized")
    assert st["phase"] == "Pending"
    assert initialized["message"] == "containers with incomplete status: [i]"
    assert pod_phase(pod, [], []) == "Pending"


# -- container spec --------------------------------------------------------------------
def test_expand_references_and_escapes():
    env = {"A": "x"}
    assert expand("$(A)-$(B)-$$(A)", env) == "x-$(B)-$(A)"


def test_resources_become_shares_quota_and_memory():
    assert cpu_and_memory({"name": "c"}) == {
        "cpu_shares": 2,
        "cpu_quota": None,
        "cpu_period": None,
        "memory_limit": None,
    }
    assert cpu_and_memory(
        {"name": "c", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}
    ) == {"cpu_shares": 2048, "cpu_quota": 200000, "cpu_period": 100000, "memory_limit": 1 << 30}


def test_bad_field_ref_and_missing_config_map_are_config_errors():
    container = {
        "name": "c",
        "image": "i",
        "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}],
    }
    with pytest.raises(ContainerConfigError, match=r"spec\.nope"):
        build_container_config(
            POD,
            container,
            sandbox_id="s",
            restart_count=0,
            pod_ip=None,
            host_ip=None,
            volume_paths={},
            config_maps={},
        )
    container = {
        "name": "c",
        "image": "i",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}],
    }
    with pytest.raises(ContainerConfigError, match="configmap 'cm' not found"):
        build_container_config(
            POD,
            container,
            sandbox_id="s",
            restart_count=0,
            pod_ip=None,
            host_ip=None,
            volume_paths={},
            config_maps={},
        )


def test_default_pull_policy():
    assert default_pull_policy("localhost/keelson/busybox:1") == "IfNotPresent"
    assert default_pull_policy("localhost:5000/busybox") == "Always"
    assert default_pull_policy("busybox:latest") == "Always"


# -- garbage collection ----------------------------------------------------------------
def test_gc_keeps_current_and_previous_instance_and_never_running_ones():
    from nodeagent.gc import select_garbage
    from nodeagent.runtime.interface import ContainerSummary

    def summary(cid, created, state, name="c", uid="u", sandbox=False):
        labels = {"io.keelson.pod.uid": uid, "io.keelson.container": name}
        if sandbox:
            labels = {"io.keelson.pod.uid": uid, "io.keelson.type": "sandbox"}
        return ContainerSummary(cid, labels, state, created)

    containers = [
        summary("c3", 3, X),
        summary("c2", 2, X),
        summary("c1", 1, X),
        summary("c0", 0, X),
        summary("r9", 9, R, name="web"),
        summary("r1", 1, R, name="web"),
        summary("s2", 2, R, sandbox=True),
        summary("s1", 1, X, sandbox=True),
        summary("other", 0, X, uid="v"),
    ]
    assert sorted(select_garbage(containers)) == ["c0", "c1", "s1"]


async def test_image_gc_frees_space_from_unused_images_only_above_threshold():
    from nodeagent.gc import DiskUsage, collect_images
    from nodeagent.runtime.fake import FakeRuntime
    from nodeagent.runtime.interface import LABEL_POD_UID, LABEL_TYPE, SandboxConfig

    pause, used, big, small = "kt/pause:1", "kt/used:1", "kt/big:1", "kt/small:1"
    runtime = FakeRuntime(images={pause, used, big, small})
    runtime.image_sizes = {pause: 500, used: 500, big: 300, small: 100}
    await runtime.run_sandbox(SandboxConfig("s", used, {LABEL_POD_UID: "u", LABEL_TYPE: "s"}, "h"))

    calm = DiskUsage(total=10_000, used=8_000, percent=80.0)
    assert await collect_images(runtime, protected={pause}, usage=calm) == []
    full = DiskUsage(total=10_000, used=8_700, percent=87.0)  # 700 bytes over the 80 % mark
    removed = await collect_images(runtime, protected={pause}, usage=full)

    assert removed == ["sha256:kt/big:1", "sha256:kt/small:1"]
    assert runtime.images == {pause, used}
