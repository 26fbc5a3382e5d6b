"""compute_pod_actions as a table: (pod, what the runtime shows) -> what the worker does.

Each row is one situation a pod worker meets; the expected ``PodActions`` is written out
whole, so a row also says what must *not* happen (no start while an init container runs,
no new sandbox for a finished pod, ...).
"""

from __future__ import annotations

from typing import Any

import pytest

from apiclient.meta import parse_time
from nodeagent.actions import (
    BackOff,
    ContainerToKill,
    ContainerToStart,
    KillReason,
    PodActions,
    PodView,
    SandboxReason,
    StartReason,
    compute_pod_actions,
    grace_seconds,
)
from nodeagent.container_spec import spec_hash
from nodeagent.pod_worker import kubelet_backoff
from nodeagent.runtime.interface import (
    KIND_APP,
    KIND_INIT,
    LABEL_CONTAINER_HASH,
    LABEL_CONTAINER_NAME,
    LABEL_POD_UID,
    LABEL_RESTART_COUNT,
    LABEL_TYPE,
    TYPE_SANDBOX,
    ContainerInfo,
    ContainerState,
)

R, X, C, U = (
    ContainerState.RUNNING,
    ContainerState.EXITED,
    ContainerState.CREATED,
    ContainerState.UNKNOWN,
)
NOW = parse_time("2026-01-01T00:10:00Z").timestamp()
FIVE_SECONDS_AGO = "2026-01-01T00:09:55Z"
TEN_SECONDS_AGO = "2026-01-01T00:09:50Z"
TWENTY_SECONDS_AGO = "2026-01-01T00:09:40Z"
ELEVEN_MINUTES_AGO = "2025-12-31T23:59:00Z"
IP = "10.244.9.2"


def spec(name: str, **extra: Any) -> dict:
    return {"name": name, "image": "localhost/keelson/busybox:1", **extra}


def make_pod(
    *names: str, init: tuple[str, ...] = (), policy: str | None = None, **meta: Any
) -> dict:
    pod_spec: dict[str, Any] = {"containers": [spec(n) for n in names]}
    if init:
        pod_spec["initContainers"] = [spec(n) for n in init]
    if policy:
        pod_spec["restartPolicy"] = policy
    grace = meta.pop("termination_grace", None)
    if grace is not None:
        pod_spec["terminationGracePeriodSeconds"] = grace
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u", **meta}, "spec": pod_spec}


def box(cid: str, state: ContainerState = R, *, created: str = TEN_SECONDS_AGO) -> ContainerInfo:
    return ContainerInfo(
        id=cid,
        name=f"keel_POD_{cid}",
        image="pause",
        image_id="sha256:pause",
        labels={LABEL_POD_UID: "u", LABEL_TYPE: TYPE_SANDBOX},
        state=state,
        created_at=created,
    )


def ctr(
    cid: str,
    name: str,
    state: ContainerState,
    *,
    exit_code: int | None = None,
    restarts: int = 0,
    started: str = TEN_SECONDS_AGO,
    finished: str = FIVE_SECONDS_AGO,
    spec_hash_label: str | None = None,
) -> ContainerInfo:
    labels = {LABEL_POD_UID: "u", LABEL_CONTAINER_NAME: name, LABEL_RESTART_COUNT: str(restarts)}
    if spec_hash_label is not None:
        labels[LABEL_CONTAINER_HASH] = spec_hash_label
    return ContainerInfo(
        id=cid,
        name=f"keel_{name}_{restarts}",
        image="localhost/keelson/busybox:1",
        image_id="sha256:busybox",
        labels=labels,
        state=state,
        exit_code=exit_code,
        created_at=started,
        started_at=started if state is not C else "",
        finished_at=finished if state is X else "",
    )


def view(*infos: ContainerInfo, ip: str | None = IP) -> PodView:
    return PodView.build(infos, address_of=lambda _sandbox_id: ip)


def start(name: str, restarts: int = 0, reason=StartReason.FIRST, kind=KIND_APP, **kw):
    return ContainerToStart(name, kind, restarts, reason, **kw)


SANDBOX = box("s1")
NEW_SANDBOX = PodActions(create_sandbox=SandboxReason.NEW, resync=True)

# (pod, view, keyword arguments, back-off attempts already made per container, expected)
ROWS = {
    # -- the sandbox ---------------------------------------------------------------------
    "fresh pod gets a sandbox first, nothing else": (
        make_pod("a", "b"),
        view(),
        {},
        {},
        NEW_SANDBOX,
    ),
    "fresh pod with init containers still only gets a sandbox": (
        make_pod("a", init=("one",)),
        view(),
        {},
        {},
        NEW_SANDBOX,
    ),
    "dead sandbox: its running containers are killed, it is replaced": (
        make_pod("a"),
        view(box("s1", X), ctr("c1", "a", R)),
        {},
        {},
        PodActions(
            create_sandbox=SandboxReason.NOT_RUNNING,
            sandboxes_to_remove=("s1",),
            containers_to_kill=(ContainerToKill("c1", "a", KillReason.SANDBOX_CHANGED),),
            resync=True,
        ),
    ),
    "running sandbox without an IP is replaced": (
        make_pod("a"),
        view(SANDBOX, ctr("c1", "a", R), ip=None),
        {},
        {},
        PodActions(
            create_sandbox=SandboxReason.NO_IP,
            sandboxes_to_remove=("s1",),
            containers_to_kill=(ContainerToKill("c1", "a", KillReason.SANDBOX_CHANGED),),
            resync=True,
        ),
    ),
    "every old sandbox goes, newest first; exited containers need no kill": (
        make_pod("a"),
        view(
            box("s1", X, created=TWENTY_SECONDS_AGO),
            box("s2", X, created=TEN_SECONDS_AGO),
            ctr("c1", "a", X, exit_code=137),
        ),
        {},
        {},
        PodActions(
            create_sandbox=SandboxReason.NOT_RUNNING,
            sandboxes_to_remove=("s2", "s1"),
            resync=True,
        ),
    ),
    # -- init containers -----------------------------------------------------------------
    "sandbox ready: the first init container starts, apps wait": (
        make_pod("a", init=("one", "two")),
        view(SANDBOX),
        {},
        {},
        PodActions(containers_to_start=(start("one", kind=KIND_INIT),)),
    ),
    "a running init container is waited for": (
        make_pod("a", init=("one", "two")),
        view(SANDBOX, ctr("i1", "one", R)),
        {},
        {},
        PodActions(),
    ),
    "init containers run in order": (
        make_pod("a", init=("one", "two")),
        view(SANDBOX, ctr("i1", "one", X, exit_code=0)),
        {},
        {},
        PodActions(containers_to_start=(start("two", kind=KIND_INIT),)),
    ),
    "all init containers succeeded: the apps start": (
        make_pod("a", "b", init=("one", "two")),
        view(SANDBOX, ctr("i1", "one", X, exit_code=0), ctr("i2", "two", X, exit_code=0)),
        {},
        {},
        PodActions(containers_to_start=(start("a"), start("b"))),
    ),
    "failed init container under Never: nothing more starts": (
        make_pod("a", init=("one", "two"), policy="Never"),
        view(SANDBOX, ctr("i1", "one", X, exit_code=1)),
        {},
        {},
        PodActions(settled=("one",)),
    ),
    "failed init container under OnFailure restarts": (
        make_pod("a", init=("one",), policy="OnFailure"),
        view(SANDBOX, ctr("i1", "one", X, exit_code=1)),
        {},
        {},
        PodActions(containers_to_start=(start("one", 1, StartReason.RESTART, KIND_INIT),)),
    ),
    "failed init container under Always restarts (as OnFailure)": (
        make_pod("a", init=("one",)),
        view(SANDBOX, ctr("i1", "one", X, exit_code=1)),
        {},
        {},
        PodActions(containers_to_start=(start("one", 1, StartReason.RESTART, KIND_INIT),)),
    ),
    "failed init container in back-off waits": (
        make_pod("a", init=("one",)),
        view(SANDBOX, ctr("i1", "one", X, exit_code=1, restarts=1)),
        {},
        {"one": 1},
        PodActions(back_offs=(BackOff("one", 5.0, 10.0),)),
    ),
    "init container created but never started is retried with the same attempt": (
        make_pod("a", init=("one",)),
        view(SANDBOX, ctr("i1", "one", C, restarts=2)),
        {},
        {},
        PodActions(
            containers_to_start=(
                start("one", 2, StartReason.INTERRUPTED, KIND_INIT, remove_first="i1"),
            )
        ),
    ),
    # -- app containers and the restart policy -------------------------------------------
    "sandbox ready, no init containers: every app container starts": (
        make_pod("a", "b"),
        view(SANDBOX),
        {},
        {},
        PodActions(containers_to_start=(start("a"), start("b"))),
    ),
    "running app container: nothing to do": (
        make_pod("a"),
        view(SANDBOX, ctr("c1", "a", R)),
        {},
        {},
        PodActions(settled=("a",)),
    ),
    "the newest instance counts, not an older one": (
        make_pod("a"),
        view(SANDBOX, ctr("c1", "a", X, exit_code=1), ctr("c2", "a", R, restarts=1)),
        {},
        {},
        PodActions(settled=("a",)),
    ),
    "exit 0 under Always restarts": (
        make_pod("a"),
        view(SANDBOX, ctr("c1", "a", X, exit_code=0)),
        {},
        {},
        PodActions(containers_to_start=(start("a", 1, StartReason.RESTART),)),
    ),
    "exit 0 under OnFailure is done": (
        make_pod("a", policy="OnFailure"),
        view(SANDBOX, ctr("c1", "a", X, exit_code=0)),
        {},
        {},
        PodActions(settled=("a",)),
    ),
    "exit 1 under OnFailure restarts": (
        make_pod("a", policy="OnFailure"),
        view(SANDBOX, ctr("c1", "a", X, exit_code=1, restarts=3)),
        {},
        {},
        PodActions(containers_to_start=(start("a", 4, StartReason.RESTART),)),
    ),
    "exit 0 under Never is done": (
        make_pod("a", policy="Never"),
        view(SANDBOX, ctr("c1", "a", X, exit_code=0)),
        {},
        {},
        PodActions(settled=("a",)),
    ),
    "exit 1 under Never is done": (
        make_pod("a", policy="Never"),
        view(SANDBOX, ctr("c1", "a", X, exit_code=1)),
        {},
        {},
        PodActions(settled=("a",)),
    ),
    "created but never started: removed and retried with the same attempt": (
        make_pod("a"),
        view(SANDBOX, ctr("c1", "a", C, restarts=1)),
        {},
        {},
        PodActions(
            containers_to_start=(start("a", 1, StartReason.INTERRUPTED, remove_first="c1"),)
        ),
    ),
    "unknown state: a new attempt": (
        make_pod("a"),
        view(SANDBOX, ctr("c1", "a", U)),
        {},
        {},
        PodActions(containers_to_start=(start("a", 1, StartReason.UNKNOWN_STATE),)),
    ),
    # -- CrashLoopBackOff ----------------------------------------------------------------
    "back-off pending: wait what is left of it, counted from when it finished": (
        make_pod("a"),
        view(SANDBOX, ctr("c1", "a", X, exit_code=2, restarts=1)),
        {},
        {"a": 1},
        PodActions(back_offs=(BackOff("a", 5.0, 10.0),)),
    ),
    "back-off doubles with every restart": (
        make_pod("a"),
        view(SANDBOX, ctr("c1", "a", X, exit_code=2, restarts=2)),
        {},
        {"a": 2},
        PodActions(back_offs=(BackOff("a", 15.0, 20.0),)),
    ),
    "back-off over: restart": (
        make_pod("a"),
        view(SANDBOX, ctr("c1", "a", X, exit_code=2, restarts=1, finished=TWENTY_SECONDS_AGO,
                          started="2026-01-01T00:09:30Z")),
        {},
        {"a": 1},
        PodActions(containers_to_start=(start("a", 2, StartReason.RESTART),)),
    ),
    "a container that ran ten minutes forgets its back-off": (
        make_pod("a"),
        view(SANDBOX, ctr("c1", "a", X, exit_code=2, restarts=5, started=ELEVEN_MINUTES_AGO)),
        {},
        {"a": 5},
        PodActions(
            containers_to_start=(start("a", 6, StartReason.RESTART, reset_backoff=True),)
        ),
    ),
    "back-off of one container does not hold up the others": (
        make_pod("a", "b", "c"),
        view(SANDBOX, ctr("c1", "a", R), ctr("c2", "b", X, exit_code=1, restarts=1)),
        {},
        {"b": 1},
        PodActions(
            containers_to_start=(start("c"),),
            back_offs=(BackOff("b", 5.0, 10.0),),
            settled=("a",),
        ),
    ),
    # -- probes and spec changes ---------------------------------------------------------
    "liveness failed: kill it; the next pass restarts it": (
        make_pod("a", "b"),
        view(SANDBOX, ctr("c1", "a", R), ctr("c2", "b", R)),
        {"unhealthy": {"c1"}},
        {},
        PodActions(
            containers_to_kill=(ContainerToKill("c1", "a", KillReason.LIVENESS),),
            settled=("b",),
            resync=True,
        ),
    ),
    "spec changed: kill and replace at once, without back-off": (
        make_pod("a"),
        view(SANDBOX, ctr("c1", "a", R, restarts=1, spec_hash_label="0123456789abcdef")),
        {},
        {"a": 3},
        PodActions(
            containers_to_kill=(ContainerToKill("c1", "a", KillReason.SPEC_CHANGED),),
            containers_to_start=(start("a", 2, StartReason.SPEC_CHANGED),),
        ),
    ),
    "spec unchanged: nothing to do": (
        make_pod("a"),
        view(SANDBOX, ctr("c1", "a", R, spec_hash_label=spec_hash(spec("a")))),
        {},
        {},
        PodActions(settled=("a",)),
    ),
    "an exited container with an old spec is simply restarted with the new one": (
        make_pod("a"),
        view(SANDBOX, ctr("c1", "a", X, exit_code=0, spec_hash_label="0123456789abcdef")),
        {},
        {},
        PodActions(containers_to_start=(start("a", 1, StartReason.RESTART),)),
    ),
    # -- finished and deleted pods -------------------------------------------------------
    "finished pod: only its sandbox and IP are released": (
        make_pod("a", policy="Never"),
        view(SANDBOX, ctr("c1", "a", X, exit_code=0)),
        {"finished": True},
        {},
        PodActions(release_sandbox=True),
    ),
    "finished pod whose sandbox died gets no new one": (
        make_pod("a", policy="Never"),
        view(box("s1", X), ctr("c1", "a", X, exit_code=0)),
        {"finished": True},
        {},
        PodActions(release_sandbox=True),
    ),
    "pod being deleted: kill what runs, remove every sandbox": (
        make_pod(
            "a", "b", deletionTimestamp="2030-01-01T00:00:00Z", deletionGracePeriodSeconds=7
        ),
        view(
            box("s0", X, created=TWENTY_SECONDS_AGO),
            SANDBOX,
            ctr("c1", "a", R),
            ctr("c2", "b", X, exit_code=0),
        ),
        {"terminating": True},
        {},
        PodActions(
            grace_seconds=7,
            kill_pod=True,
            containers_to_kill=(ContainerToKill("c1", "a", KillReason.POD_TERMINATING),),
            sandboxes_to_remove=("s1", "s0"),
        ),
    ),
    "pod deleted while an init container runs: that one is killed too": (
        make_pod("a", init=("one",), deletionTimestamp="2030-01-01T00:00:00Z"),
        view(SANDBOX, ctr("i1", "one", R)),
        {"terminating": True},
        {},
        PodActions(
            kill_pod=True,
            containers_to_kill=(ContainerToKill("i1", "one", KillReason.POD_TERMINATING),),
            sandboxes_to_remove=("s1",),
        ),
    ),
    "pod vanished from the API: terminated with its own grace period": (
        make_pod("a", termination_grace=3),
        view(SANDBOX, ctr("c1", "a", R)),
        {"terminating": True, "finished": True},
        {},
        PodActions(
            grace_seconds=3,
            kill_pod=True,
            containers_to_kill=(ContainerToKill("c1", "a", KillReason.POD_TERMINATING),),
            sandboxes_to_remove=("s1",),
        ),
    ),
    "terminating a pod that has nothing left": (
        make_pod("a"),
        view(),
        {"terminating": True},
        {},
        PodActions(kill_pod=True),
    ),
}


@pytest.mark.parametrize(("pod", "pod_view", "kwargs", "attempts", "expected"),
                         list(ROWS.values()), ids=list(ROWS))
def test_compute_pod_actions(pod, pod_view, kwargs, attempts, expected):
    backoff = kubelet_backoff()
    for name, count in attempts.items():
        for _ in range(count):
            backoff.attempted(f"u/{name}", now=NOW - 100)

    actions = compute_pod_actions(pod, pod_view, backoff=backoff, now=NOW, **kwargs)

    assert actions == expected


def test_the_decision_does_not_touch_the_back_off():
    backoff = kubelet_backoff()
    backoff.attempted("u/a", now=NOW - 100)
    pod = make_pod("a")
    long_run = view(SANDBOX, ctr("c1", "a", X, exit_code=2, started=ELEVEN_MINUTES_AGO))

    compute_pod_actions(pod, long_run, backoff=backoff, now=NOW)

    assert backoff.current_delay("u/a") == 10.0  # forgetting it is the executor's job


@pytest.mark.parametrize(
    ("meta", "spec_grace", "expected"),
    [
        ({}, None, 30),
        ({}, 5, 5),
        ({"deletionGracePeriodSeconds": 2}, 5, 2),
        ({"deletionGracePeriodSeconds": 0}, 5, 0),
        ({"deletionGracePeriodSeconds": -4}, None, 0),
    ],
)
def test_grace_period_prefers_the_deletion_request(meta, spec_grace, expected):
    pod = make_pod("a", termination_grace=spec_grace, **meta)
    assert grace_seconds(pod) == expected


def test_view_groups_instances_newest_first_and_knows_the_sandbox_ip():
    pod_view = view(
        box("s1", X, created=TWENTY_SECONDS_AGO),
        box("s2", R),
        ctr("c1", "a", X, exit_code=1),
        ctr("c3", "a", R, restarts=2),
        ctr("c2", "a", X, exit_code=1, restarts=1),
    )
    assert [s.id for s in pod_view.sandboxes] == ["s2", "s1"]
    assert pod_view.running_sandbox is not None and pod_view.running_sandbox.id == "s2"
    assert pod_view.sandbox_ip == IP
    assert [i.id for i in pod_view.containers["a"]] == ["c3", "c2", "c1"]
    assert view(box("s1", X)).sandbox_ip is None  # no running sandbox, no IP


def test_view_updated_by_executors():
    before = view(SANDBOX, ctr("c1", "a", R), ctr("c9", "b", C))
    stopped = ctr("c1", "a", X, exit_code=137)
    started = ctr("c2", "a", R, restarts=1)

    after = before.updated(stopped).updated(started).without("c9")

    assert [(i.id, i.state) for i in after.containers["a"]] == [("c2", R), ("c1", X)]
    assert "b" not in after.containers
    assert after.sandbox_ip == IP and after.sandboxes == before.sandboxes
