"""Pod workers with Secrets, projected ServiceAccount tokens and service env vars.

The real workers run against the stateful fake runtime; pods, status and Events go through
the fake API server as in ``test_nodeagent_pod_worker.py``. Secrets, ConfigMaps and the
TokenRequest endpoint come from ``StubPodApi`` (the new PodApi calls answered from
dictionaries), tmpfs mounts from a recording fake mounter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from apiclient.client import ApiClient
from apiclient.errors import NotFoundError
from apiclient.meta import format_time
from apiclient.resources import EVENTS, PODS
from apiclient.store import Store
from apiclient.testing import FakeApiServer
from nodeagent import atomic_writer
from nodeagent.api import PodApi
from nodeagent.metrics import AgentMetrics
from nodeagent.network.ipam import HostLocalIpam
from nodeagent.network.manager import PodNetworkManager
from nodeagent.pleg import Pleg
from nodeagent.pod_worker import NodeContext, PodWorkers
from nodeagent.runtime.fake import FakeRuntime
from nodeagent.runtime.interface import ContainerConfig, ContainerState
from nodeagent.service_env import ServiceLister
from nodeagent.tokens import TokenManager
from tests.unit.test_nodeagent_pod_worker import BUSYBOX, PAUSE, FakeBridge, eventually
from tests.unit.test_nodeagent_secrets import KUBERNETES, FakeMounter, secret, svc


class StubPodApi(PodApi):
    """PodApi whose Secrets, ConfigMaps and TokenRequests come from dictionaries."""

    def __init__(self, client: ApiClient) -> None:
        super().__init__(client, node_name="node-a")
        self.secret_objects: dict[str, dict] = {}
        self.config_map_objects: dict[str, dict] = {}
        self.token_bodies: list[tuple[str, str, dict]] = []
        self.token_age = 0  # seconds the answered tokens already lived (refresh soon)

    async def secrets(self, namespace: str, names: set[str]) -> dict[str, dict]:
        return {n: self.secret_objects[n] for n in names if n in self.secret_objects}

    async def config_maps(self, namespace: str, names: set[str]) -> dict[str, dict]:
        return {n: self.config_map_objects[n] for n in names if n in self.config_map_objects}

    async def request_token(self, namespace: str, account: str, body: dict) -> dict:
        self.token_bodies.append((namespace, account, body))
        if account == "missing":
            raise NotFoundError(404, "NotFound", f'serviceaccounts "{account}" not found', {})
        seconds = body["spec"]["expirationSeconds"]
        expires = datetime.fromtimestamp(time.time() + seconds - self.token_age, UTC)
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": body["spec"],
            "status": {
                "token": f"token-{len(self.token_bodies)}",
                "expirationTimestamp": format_time(expires),
            },
        }


@dataclass
class Node:
    server: FakeApiServer
    runtime: FakeRuntime
    api: StubPodApi
    mounter: FakeMounter
    workers: PodWorkers
    data_dir: Path

    def pod(self, name: str) -> dict | None:
        return self.server.objects.get((PODS, f"shop/{name}"))

    def status(self, name: str) -> dict:
        return self.pod(name)["status"]

    def events(self, reason: str) -> list[dict]:
        return [
            o for (r, _), o in self.server.objects.items() if r == EVENTS and o["reason"] == reason
        ]

    def app_config(self, uid: str, name: str = "app") -> ContainerConfig:
        (found,) = [
            c.config
            for c in self.runtime.containers.values()
            if c.info.pod_uid == uid and c.info.container_name == name
        ]
        assert isinstance(found, ContainerConfig)
        return found

    def volume(self, uid: str, name: str) -> Path:
        config = self.app_config(uid)
        return Path(next(m.host_path for m in config.mounts if m.container_path == name))


@pytest.fixture
async def node(tmp_path) -> AsyncIterator[Node]:
    async with FakeApiServer() as server:
        runtime = FakeRuntime(images={PAUSE, BUSYBOX})
        ipam = HostLocalIpam(tmp_path, "10.244.9.0/24")

        async def live() -> set[str]:
            return {
                s.id
                for s in await runtime.list_containers()
                if s.is_sandbox and s.state is ContainerState.RUNNING
            }

        client = ApiClient(server.config())
        api = StubPodApi(client)
        store = Store()
        for service in (KUBERNETES, svc("db-main", "shop", "10.96.5.5", {"port": 5432})):
            store.upsert(service)
        mounter = FakeMounter()
        context = NodeContext(
            runtime=runtime,
            network=PodNetworkManager(bridge=FakeBridge(), ipam=ipam, live_sandboxes=live),
            api=api,
            node_name="node-a",
            host_ip="192.0.2.10",
            pod_infra_image=PAUSE,
            data_dir=tmp_path,
            metrics=AgentMetrics(CollectorRegistry()),
            mounter=mounter,
            services=ServiceLister(store, synced=lambda: True),
            tokens=TokenManager(api.request_token, clock=time.time, jitter=lambda: 0.0),
        )
        workers = PodWorkers(context)
        pleg = Pleg(runtime, workers.wake, period=0.05)
        task = asyncio.create_task(pleg.run())
        yield Node(server, runtime, api, mounter, workers, tmp_path)
        task.cancel()
        await workers.stop()
        await api.close()
        await client.close()


API_VOLUME = {
    "name": "kube-api-access",
    "projected": {
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                    ]
                }
            },
        ],
    },
}


def make_pod(
    name: str,
    *,
    volumes: list[dict],
    env: list[dict] | None = None,
    mounts: list[dict] | None = None,
    account: str = "builder",
    **spec: Any,
) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}"},
        "spec": {
            "nodeName": "node-a",
            "serviceAccountName": account,
            "volumes": volumes,
            "containers": [
                {
                    "name": "app",
                    "image": BUSYBOX,
                    "command": ["sleep", "1000"],
                    "env": env or [],
                    "volumeMounts": mounts or [],
                }
            ],
            **spec,
        },
    }


def submit(node: Node, pod: dict) -> dict:
    stored = node.server.seed(PODS, pod)
    node.workers.update_pod(stored)
    return stored


MOUNTS = [
    {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
    {
        "name": "kube-api-access",
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    },
]


def standard_pod(name: str) -> dict:
    return make_pod(
        name,
        volumes=[
            {"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400}},
            API_VOLUME,
        ],
        mounts=MOUNTS,
        env=[
            {
                "name": "DB_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
            }
        ],
    )


async def test_secret_volume_token_and_env_reach_the_container(node):
    node.api.secret_objects["db"] = secret("db", password="s3cret")
    node.api.config_map_objects["kube-root-ca.crt"] = {"data": {"ca.crt": "CA PEM"}}
    pod = submit(node, standard_pod("web"))
    uid = pod["metadata"]["uid"]

    await eventually(lambda: node.status("web")["phase"] == "Running")

    config = node.app_config(uid)
    assert config.env["DB_PASSWORD"] == "s3cret"
    assert config.env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert config.env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"
    assert config.env["DB_MAIN_SERVICE_PORT"] == "5432"
    creds = node.volume(uid, "/etc/creds")
    api = node.volume(uid, "/var/run/secrets/kubernetes.io/serviceaccount")
    assert atomic_writer.read(creds) == {"password": b"s3cret"}
    assert (creds / "password").stat().st_mode & 0o777 == 0o400
    assert atomic_writer.read(api) == {
        "token": b"token-1",
        "ca.crt": b"CA PEM",
        "namespace": b"shop",
    }
    assert node.mounter.mounted == {str(creds), str(api)}  # both on tmpfs
    namespace, account, body = node.api.token_bodies[0]
    assert (namespace, account) == ("shop", "builder")
    assert body["spec"]["expirationSeconds"] == 3607
    assert body["spec"]["boundObjectRef"] == {
        "kind": "Pod",
        "apiVersion": "v1",
        "name": "web",
        "uid": uid,
    }
    assert "audiences" not in body["spec"]


async def test_changed_secret_is_rewritten_in_place(node):
    node.api.secret_objects["db"] = secret("db", password="one")
    node.api.config_map_objects["kube-root-ca.crt"] = {"data": {"ca.crt": "CA"}}
    pod = submit(node, standard_pod("web"))
    uid = pod["metadata"]["uid"]
    await eventually(lambda: node.status("web")["phase"] == "Running")
    creds = node.volume(uid, "/etc/creds")
    before = (creds / "..data").readlink()
    started = [c.id for c in node.runtime.running(pod_uid=uid)]

    node.api.secret_objects["db"] = secret("db", password="two")
    node.workers.wake(uid)  # what the 60 s resync does at the latest

    await eventually(lambda: (creds / "password").read_text() == "two")
    assert (creds / "..data").readlink() != before
    assert [c.id for c in node.runtime.running(pod_uid=uid)] == started  # nothing restarted
    assert len(node.api.token_bodies) == 1  # the token was still fresh


async def test_token_is_refreshed_on_schedule_without_any_event(node):
    node.api.config_map_objects["kube-root-ca.crt"] = {"data": {"ca.crt": "CA"}}
    # tokens answered as if issued 2885 s of 3607 ago: due for a refresh (less than 20 % =
    # 721 s left) in about a second
    node.api.token_age = 2885
    pod = submit(node, make_pod("tok", volumes=[API_VOLUME], mounts=MOUNTS[1:]))
    uid = pod["metadata"]["uid"]
    await eventually(lambda: node.status("tok")["phase"] == "Running")
    api = node.volume(uid, "/var/run/secrets/kubernetes.io/serviceaccount")
    first = (api / "token").read_text()

    await eventually(lambda: (api / "token").read_text() != first, timeout=6.0)
    assert len(node.api.token_bodies) >= 2


async def test_missing_secret_waits_with_kubelets_reason_then_starts(node):
    node.api.config_map_objects["kube-root-ca.crt"] = {"data": {"ca.crt": "CA"}}
    pod = submit(node, standard_pod("web"))
    uid = pod["metadata"]["uid"]

    def waiting() -> dict:
        return node.status("web")["containerStatuses"][0]["state"]["waiting"]

    await eventually(lambda: waiting()["reason"] == "CreateContainerConfigError")
    assert 'secret "db" not found' in waiting()["message"]
    await eventually(lambda: node.events("FailedMount"))
    assert node.events("FailedMount")[0]["message"] == (
        'MountVolume.SetUp failed for volume "creds" : secret "db" not found'
    )

    node.api.secret_objects["db"] = secret("db", password="late")
    node.workers.wake(uid)
    await eventually(lambda: node.status("web")["phase"] == "Running", timeout=15.0)
    assert node.app_config(uid).env["DB_PASSWORD"] == "late"


async def test_missing_secret_key_in_env_is_a_config_error(node):
    node.api.secret_objects["db"] = secret("db", user="u")
    pod = make_pod(
        "env",
        volumes=[],
        env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
    )
    submit(node, pod)

    def waiting() -> dict:
        return node.status("env")["containerStatuses"][0]["state"].get("waiting", {})

    await eventually(lambda: waiting().get("reason") == "CreateContainerConfigError")
    assert waiting()["message"] == "couldn't find key password in Secret shop/db"


async def test_token_request_failure_is_shown_on_the_pod(node):
    node.api.config_map_objects["kube-root-ca.crt"] = {"data": {"ca.crt": "CA"}}
    submit(node, make_pod("nosa", volumes=[API_VOLUME], mounts=MOUNTS[1:], account="missing"))

    def waiting() -> dict:
        return node.status("nosa")["containerStatuses"][0]["state"].get("waiting", {})

    await eventually(lambda: waiting().get("reason") == "CreateContainerConfigError")
    assert "failed to fetch token" in waiting()["message"]
    assert 'serviceaccounts "missing" not found' in waiting()["message"]


async def test_deleted_pod_unmounts_and_removes_its_volumes(node):
    node.api.secret_objects["db"] = secret("db", password="pw")
    node.api.config_map_objects["kube-root-ca.crt"] = {"data": {"ca.crt": "CA"}}
    pod = submit(node, standard_pod("web"))
    uid = pod["metadata"]["uid"]
    await eventually(lambda: node.status("web")["phase"] == "Running")
    assert len(node.mounter.mounted) == 2

    deleting = {**node.pod("web")}
    deleting["metadata"] = {
        **deleting["metadata"],
        "deletionTimestamp": "2030-01-01T00:00:00Z",
        "deletionGracePeriodSeconds": 1,
    }
    node.workers.update_pod(deleting)

    await eventually(lambda: node.pod("web") is None)
    assert node.mounter.mounted == set()
    assert ("umount", str(node.data_dir / "pods" / uid / "volumes" / "secret" / "creds")) in (
        node.mounter.history
    )
    assert not (node.data_dir / "pods" / uid).exists()
    assert node.workers.ctx.tokens.next_refresh(uid) is None


async def test_orphaned_pod_directories_are_unmounted_and_removed(node):
    orphan = node.data_dir / "pods" / "uid-orphan" / "volumes" / "secret" / "creds"
    node.mounter.ensure_tmpfs(str(orphan))
    kept = node.data_dir / "pods" / "uid-kept"
    kept.mkdir(parents=True)

    await node.workers.cleanup_orphans({"uid-kept"})

    assert node.mounter.mounted == set()
    assert not (node.data_dir / "pods" / "uid-orphan").exists()
    assert kept.exists()
