"""Deployments end to end: real apiserver, in-process controllers, real kubectl."""

from __future__ import annotations

import asyncio
import contextlib

import yaml

from apiclient.errors import ConflictError, NotFoundError
from apiclient.pods import is_ready
from apiclient.resources import DEPLOYMENTS, REPLICASETS
from tests.e2e.workloads.conftest import Cluster, eventually


def deployment_yaml(name: str, *, replicas: int = 3, env: str = "one",
                    strategy: str = "RollingUpdate", extra_spec: dict | None = None) -> str:
    spec: dict = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "strategy": {"type": strategy},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{
                         "name": "web", "image": "localhost/keelson/busybox:1",
                         "command": ["httpd", "-f", "-p", "8080"],
                         "env": [{"name": "VERSION", "value": env}]}]}},
        **(extra_spec or {}),
    }
    return yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": name}, "spec": spec})


async def replicasets(cluster: Cluster, name: str) -> list[dict]:
    listing = await cluster.client.list(REPLICASETS, namespace=cluster.namespace,
                                        label_selector=f"app={name}")
    return sorted(listing["items"], key=lambda rs: rs["metadata"]["creationTimestamp"])


async def test_apply_rolls_out_and_reports_status(cluster: Cluster) -> None:
    await cluster.kubectl("apply", "-f", "-", input=deployment_yaml("web"))
    result = await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert "successfully rolled out" in result.stdout

    [rs] = await replicasets(cluster, "web")
    hash_label = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{hash_label}"
    assert rs["spec"]["selector"]["matchLabels"]["pod-template-hash"] == hash_label
    annotations = rs["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/revision"] == "1"
    assert annotations["deployment.kubernetes.io/desired-replicas"] == "3"
    assert annotations["deployment.kubernetes.io/max-replicas"] == "4"  # 3 + ceil(25% of 3)
    pods = await cluster.pods(label_selector="app=web")
    assert len(pods) == 3
    assert all(p["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"]
               for p in pods)

    deployment = await cluster.client.get(DEPLOYMENTS, "web", namespace=cluster.namespace)
    status = deployment["status"]
    assert (status["replicas"], status["updatedReplicas"], status["readyReplicas"],
            status["availableReplicas"], status["unavailableReplicas"]) == (3, 3, 3, 3, 0)
    assert status["observedGeneration"] == deployment["metadata"]["generation"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"


async def test_kubectl_scale_follows(cluster: Cluster) -> None:
    await cluster.kubectl("apply", "-f", "-", input=deployment_yaml("web"))
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    for replicas in (5, 1):
        await cluster.kubectl("scale", "deployment/web", f"--replicas={replicas}")
        await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")

        async def settled(replicas: int = replicas) -> bool:
            pods = await cluster.pods(label_selector="app=web")
            return len(pods) == replicas
        await eventually(settled)
    [rs] = await replicasets(cluster, "web")
    assert rs["spec"]["replicas"] == 1


async def test_rolling_update_respects_surge_and_unavailability(cluster: Cluster) -> None:
    await cluster.kubectl("apply", "-f", "-", input=deployment_yaml("web", replicas=4))
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    # New pods become ready only when the test says so, one at a time, so every
    # intermediate state of the rollout can be observed.
    cluster.ready = False
    await cluster.kubectl("apply", "-f", "-", input=deployment_yaml("web", replicas=4,
                                                                   env="two"))
    seen_max_total, seen_min_ready = 0, 4
    for _ in range(200):
        pods = [p for p in await cluster.pods(label_selector="app=web")
                if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p["status"].get("conditions") or [])]
        seen_max_total = max(seen_max_total, len(pods))
        seen_min_ready = min(seen_min_ready, len(ready))
        not_ready = [p for p in pods if p not in ready and p["status"].get("podIP")]
        rss = await replicasets(cluster, "web")
        if len(rss) == 2 and rss[0]["spec"]["replicas"] == 0 and len(ready) == 4 \
                and len(pods) == 4:
            break
        if not_ready:
            await cluster.make_ready(not_ready[0]["metadata"]["name"])
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the rollout did not complete")
    # maxSurge 25% of 4 = 1, maxUnavailable 25% of 4 = 1.
    assert seen_max_total <= 5
    assert seen_min_ready >= 3
    cluster.ready = True
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    old, new = await replicasets(cluster, "web")
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert new["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == "two"
    assert old["spec"]["replicas"] == 0


async def test_rollout_history_and_undo(cluster: Cluster) -> None:
    await cluster.kubectl("apply", "-f", "-", input=deployment_yaml("web"))
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    first_rs = (await replicasets(cluster, "web"))[0]["metadata"]["name"]
    await cluster.kubectl("set", "env", "deployment/web", "VERSION=two")
    await cluster.kubectl("annotate", "deployment/web",
                          "kubernetes.io/change-cause=set VERSION=two")
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")

    history = (await cluster.kubectl("rollout", "history", "deployment/web")).stdout
    rows = [line.split(None, 1) for line in history.splitlines()[2:] if line.strip()]
    assert rows == [["1", "<none>"], ["2", "set VERSION=two"]], history

    await cluster.kubectl("rollout", "undo", "deployment/web")
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    deployment = await cluster.client.get(DEPLOYMENTS, "web", namespace=cluster.namespace)
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "VERSION", "value": "one"}]
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    # The first ReplicaSet was re-used under the new revision and carries all replicas.
    by_name = {rs["metadata"]["name"]: rs for rs in await replicasets(cluster, "web")}
    assert by_name[first_rs]["spec"]["replicas"] == 3
    assert by_name[first_rs]["metadata"]["annotations"][
        "deployment.kubernetes.io/revision"] == "3"
    pods = await cluster.pods(label_selector="app=web")
    assert {p["spec"]["containers"][0]["env"][0]["value"] for p in pods} == {"one"}


async def test_recreate_removes_old_pods_before_new_ones(cluster: Cluster) -> None:
    await cluster.kubectl("apply", "-f", "-", input=deployment_yaml("web", strategy="Recreate"))
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    await cluster.kubectl("apply", "-f", "-",
                          input=deployment_yaml("web", strategy="Recreate", env="two"))
    mixed = False
    for _ in range(100):
        versions = {p["spec"]["containers"][0]["env"][0]["value"]
                    for p in await cluster.pods(label_selector="app=web")}
        mixed = mixed or versions == {"one", "two"}
        if versions == {"two"}:
            break
        await asyncio.sleep(0.05)
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert not mixed
    assert len(await cluster.pods(label_selector="app=web")) == 3


async def test_revision_history_limit_prunes_old_replicasets(cluster: Cluster) -> None:
    extra = {"revisionHistoryLimit": 1}
    for version in ("one", "two", "three"):
        await cluster.kubectl("apply", "-f", "-", input=deployment_yaml(
            "web", replicas=1, env=version, extra_spec=extra))
        await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")

    async def pruned() -> bool:
        return len(await replicasets(cluster, "web")) == 2
    await eventually(pruned)
    revisions = sorted(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                       for rs in await replicasets(cluster, "web"))
    assert revisions == ["2", "3"]


async def test_deleting_a_deployment_removes_its_replicasets_and_pods(cluster: Cluster) -> None:
    await cluster.kubectl("apply", "-f", "-", input=deployment_yaml("web"))
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    await cluster.kubectl("delete", "deployment/web")

    async def gone() -> bool:
        return not await replicasets(cluster, "web") and \
            not await cluster.pods(label_selector="app=web")
    await eventually(gone)


async def test_scaling_mid_rollout_resizes_both_replicasets(cluster: Cluster) -> None:
    await cluster.kubectl("apply", "-f", "-", input=deployment_yaml("web", replicas=4))
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    cluster.ready = False  # the rollout stalls with old and new ReplicaSets both active
    await cluster.kubectl("set", "env", "deployment/web", "VERSION=two")

    async def both_active() -> list[dict]:
        rss = await replicasets(cluster, "web")
        return rss if len(rss) == 2 and all(rs["spec"]["replicas"] > 0 for rs in rss) else []
    await eventually(both_active)
    await cluster.kubectl("scale", "deployment/web", "--replicas=8")

    async def resized() -> bool:
        old, new = await replicasets(cluster, "web")
        # 8 wanted + surge 2 = 10 pods at most, shared by both ReplicaSets.
        return old["spec"]["replicas"] + new["spec"]["replicas"] == 10 and \
            old["spec"]["replicas"] > 3 and new["spec"]["replicas"] > 1
    await eventually(resized)
    cluster.ready = True

    async def ready_stragglers() -> None:
        # A pod the simulated kubelet was still marking not-ready when the flag flipped can
        # land after any one sweep; keep sweeping until the rollout is done.
        while True:
            for pod in await cluster.pods(label_selector="app=web"):
                if not is_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
                    with contextlib.suppress(NotFoundError, ConflictError):  # changed meanwhile
                        await cluster.make_ready(pod["metadata"]["name"])
            await asyncio.sleep(0.2)

    sweeper = asyncio.create_task(ready_stragglers())
    try:
        await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=30s")
    finally:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
    pods = await cluster.pods(label_selector="app=web")
    assert len(pods) == 8
    assert {p["spec"]["containers"][0]["env"][0]["value"] for p in pods} == {"two"}


async def test_a_stuck_rollout_exceeds_its_progress_deadline(cluster: Cluster) -> None:
    cluster.ready = False  # the pods never become ready
    await cluster.kubectl("apply", "-f", "-", input=deployment_yaml(
        "web", replicas=1, extra_spec={"progressDeadlineSeconds": 2}))
    result = await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=20s",
                                   check=False)
    assert result.returncode != 0
    assert "exceeded its progress deadline" in result.stderr
    deployment = await cluster.client.get(DEPLOYMENTS, "web", namespace=cluster.namespace)
    progressing = next(c for c in deployment["status"]["conditions"]
                       if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False",
                                                              "ProgressDeadlineExceeded")
