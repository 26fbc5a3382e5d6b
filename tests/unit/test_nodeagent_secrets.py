"""Secrets, projected volumes, ServiceAccount tokens and service env vars: the pure parts.

The atomic writer on a real directory, the payload rules (kubelet's MakePayload and
downwardAPI CollectData), the token manager's refresh rule with an injected clock, the
service env naming (kubelet's FromServices) and env from Secrets. The pod worker using all
of them is in ``test_nodeagent_secret_worker.py``; real tmpfs mounts are proven in
``tests/functional/nodeagent/test_secret_volumes.py``.
"""

from __future__ import annotations

import base64
import os
import stat
from decimal import Decimal
from pathlib import Path

import pytest

from apiclient.errors import NotFoundError
from apiclient.meta import format_time
from apiclient.store import Store
from nodeagent import atomic_writer
from nodeagent.atomic_writer import FileProjection, PayloadError
from nodeagent.container_spec import ContainerConfigError, resolve_env
from nodeagent.mounts import MountError, parse_mountinfo
from nodeagent.projection import (
    SourceError,
    VolumeSetupError,
    config_map_payload,
    downward_payload,
    format_map,
    secret_payload,
)
from nodeagent.service_env import ServiceLister, ServicesNotSynced, from_services, service_env
from nodeagent.tokens import MAX_TTL_SECONDS, Token, TokenError, TokenKey, TokenManager
from nodeagent.volumes import VolumeSources, prepare_volumes, remove_pod_dir


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(name: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": "default"},
        "data": {k: b64(v) for k, v in data.items()},
    }


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class FakeMounter:
    """Records tmpfs mounts instead of making them (unit tests run without mounts)."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.mounted: set[str] = set()
        self.history: list[tuple[str, str]] = []
        self.stuck = stuck  # unmounting fails, as a busy mount would

    def ensure_tmpfs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        if path not in self.mounted:
            self.mounted.add(path)
            self.history.append(("mount", path))

    def mount_points_under(self, root: str) -> list[str]:
        return sorted(p for p in self.mounted if p.startswith(root.rstrip("/") + "/"))

    def unmount_all_under(self, root: str) -> list[str]:
        points = self.mount_points_under(root)
        if self.stuck and points:
            raise MountError(16, f"still mounted under {root}: {', '.join(points)}")
        for point in points:
            self.mounted.discard(point)
            self.history.append(("umount", point))
        return points


# -- atomic writer -----------------------------------------------------------------------
def test_atomic_writer_layout_is_kubelets(tmp_path):
    target = tmp_path / "vol"
    written = atomic_writer.write(
        target,
        {"user": FileProjection(b"admin", 0o400), "dir/nested": FileProjection(b"n", 0o644)},
    )

    assert written
    data_dir = os.readlink(target / "..data")
    assert data_dir.startswith("..") and (target / data_dir).is_dir()
    assert os.readlink(target / "user") == "..data/user"
    assert os.readlink(target / "dir") == "..data/dir"
    assert (target / "user").read_bytes() == b"admin"
    assert mode_of(target / data_dir / "user") == 0o400
    assert (target / "dir" / "nested").read_text() == "n"
    assert atomic_writer.read(target) == {"user": b"admin", "dir/nested": b"n"}


def test_atomic_writer_writes_only_changes_and_swaps_data_dir(tmp_path):
    target = tmp_path / "vol"
    atomic_writer.write(target, {"a": FileProjection(b"1"), "b": FileProjection(b"2")})
    first = os.readlink(target / "..data")

    assert not atomic_writer.write(target, {"a": FileProjection(b"1"), "b": FileProjection(b"2")})
    assert os.readlink(target / "..data") == first

    assert atomic_writer.write(target, {"a": FileProjection(b"changed")})
    second = os.readlink(target / "..data")
    assert second != first
    assert not (target / first).exists()  # the old timestamped directory is gone
    assert not (target / "b").is_symlink() and not (target / "b").exists()
    assert (target / "a").read_bytes() == b"changed"
    assert sorted(p.name for p in target.iterdir()) == sorted(["..data", "a", second])
    # a mode change alone is a change too
    assert atomic_writer.write(target, {"a": FileProjection(b"changed", 0o600)})
    assert mode_of(target / "a") == 0o600


def test_atomic_writer_replaces_plain_files_of_an_older_agent(tmp_path):
    target = tmp_path / "vol"
    target.mkdir()
    (target / "key").write_text("old")
    atomic_writer.write(target, {"key": FileProjection(b"new")})
    assert os.readlink(target / "key") == "..data/key"
    assert (target / "key").read_text() == "new"


@pytest.mark.parametrize("path", ["/abs", "../up", "a/../b", "..hidden", "", "x" * 256])
def test_atomic_writer_refuses_bad_paths(tmp_path, path):
    with pytest.raises(PayloadError):
        atomic_writer.write(tmp_path / "vol", {path: FileProjection(b"")})


def test_mountinfo_parsing_unescapes_paths():
    text = (
        "36 35 98:0 / /mnt/with\\040space rw,noatime shared:1 - tmpfs tmpfs rw\n"
        "37 35 98:0 / /var/lib/x rw master:1 - ext4 /dev/sda1 rw\n"
    )
    assert parse_mountinfo(text) == [("/mnt/with space", "tmpfs"), ("/var/lib/x", "ext4")]


# -- payloads ----------------------------------------------------------------------------
def test_secret_payload_default_mode_items_and_modes():
    found = secret("s", user="admin", password="pw")
    everything = secret_payload({"secretName": "s"}, found, name="s", default_mode=0o644)
    assert everything == {
        "user": FileProjection(b"admin", 0o644),
        "password": FileProjection(b"pw", 0o644),
    }
    items = [{"key": "password", "path": "creds/pw", "mode": 0o400}, {"key": "user", "path": "u"}]
    chosen = secret_payload({"items": items}, found, name="s", default_mode=0o440)
    assert chosen == {
        "creds/pw": FileProjection(b"pw", 0o400),
        "u": FileProjection(b"admin", 0o440),
    }


def test_secret_payload_missing_secret_or_key_and_optional():
    with pytest.raises(SourceError, match=r'^secret "gone" not found$'):
        secret_payload({}, None, name="gone", default_mode=0o644)
    assert secret_payload({"optional": True}, None, name="gone", default_mode=0o644) == {}
    items = [{"key": "nope", "path": "n"}]
    with pytest.raises(SourceError, match="references non-existent secret key: nope"):
        secret_payload({"items": items}, secret("s"), name="s", default_mode=0o644)
    optional = {"items": items, "optional": True}
    assert secret_payload(optional, secret("s"), name="s", default_mode=0o644) == {}


def test_config_map_payload_reads_binary_data():
    config_map = {"data": {"a": "text"}, "binaryData": {"b": b64("\x00bin")}}
    assert config_map_payload({"name": "cm"}, config_map, default_mode=0o644) == {
        "a": FileProjection(b"text"),
        "b": FileProjection(b"\x00bin"),
    }
    with pytest.raises(SourceError, match='configmap "cm" not found'):
        config_map_payload({"name": "cm"}, None, default_mode=0o644)


POD = {
    "metadata": {
        "name": "web",
        "namespace": "shop",
        "uid": "u-1",
        "labels": {"app": "web", "tier": 'front "end"'},
        "annotations": {"note": "x"},
    },
    "spec": {
        "serviceAccountName": "builder",
        "containers": [
            {
                "name": "c",
                "image": "i",
                "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "64Mi"}},
            }
        ],
    },
}


def test_downward_api_items_like_kubelet():
    items = [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}, "mode": 0o600},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
        {
            "path": "cpu",
            "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu", "divisor": "1m"},
        },
        {
            "path": "mem",
            "resourceFieldRef": {
                "containerName": "c",
                "resource": "limits.memory",
                "divisor": "1Mi",
            },
        },
        {"path": "cpu-limit", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
    ]
    payload = downward_payload(
        items, POD, default_mode=0o644, allocatable={"cpu": Decimal(4), "memory": Decimal(1)}
    )
    text = {path: p.data.decode() for path, p in payload.items()}
    assert text == {
        "name": "web",
        "ns": "shop",
        "uid": "u-1",
        "labels": 'app="web"\ntier="front \\"end\\""',
        "app": "web",
        "cpu": "250",
        "mem": "64",
        "cpu-limit": "4",  # no limit: the node's allocatable
    }
    assert payload["ns"].mode == 0o600
    assert format_map({}) == ""
    with pytest.raises(SourceError, match=r"spec\.nope"):
        downward_payload(
            [{"path": "x", "fieldRef": {"fieldPath": "spec.nope"}}],
            POD,
            default_mode=0o644,
            allocatable={},
        )


# -- tokens ------------------------------------------------------------------------------
def test_requires_refresh_follows_kubelets_rule():
    # a one-hour token issued at t=0
    token = Token("t", expiration=3600.0, lifetime=3600)
    assert not token.requires_refresh(2879.0)
    assert token.requires_refresh(2881.0)  # older than 80 % of its lifetime
    assert token.requires_refresh(-5.0)  # the clock went back before its issue time
    assert token.requires_refresh(2871.0, jitter=10.0)  # the jitter moves it earlier
    # a one-year token (the API server may grant that for 3607): refreshed after 24 h
    year = 365 * 24 * 3600
    long_lived = Token("t", expiration=float(year), lifetime=year)
    assert not long_lived.requires_refresh(MAX_TTL_SECONDS - 1.0)
    assert long_lived.requires_refresh(MAX_TTL_SECONDS + 1.0)
    assert token.refresh_at() == 2880.0 and long_lived.refresh_at() == MAX_TTL_SECONDS


class TokenApi:
    """The TokenRequest endpoint: answers from the injected clock, or fails."""

    def __init__(self, clock, *, granted: int | None = None) -> None:
        self.clock = clock
        self.bodies: list[tuple[str, str, dict]] = []
        self.fail = False
        self.granted = granted

    async def __call__(self, namespace: str, account: str, body: dict) -> dict:
        self.bodies.append((namespace, account, body))
        if self.fail:
            raise NotFoundError(404, "NotFound", 'serviceaccounts "builder" not found', {})
        from datetime import UTC, datetime

        seconds = self.granted or body["spec"]["expirationSeconds"]
        expires = datetime.fromtimestamp(self.clock() + seconds, UTC)
        return {
            "spec": {**body["spec"], "expirationSeconds": seconds},
            "status": {
                "token": f"token-{len(self.bodies)}",
                "expirationTimestamp": format_time(expires),
            },
        }


KEY = TokenKey("shop", "builder", (), 3600, "web", "u-1")


async def test_token_manager_caches_and_refreshes_by_the_rule():
    now = [1_000_000.0]
    api = TokenApi(lambda: now[0])
    tokens = TokenManager(api, clock=lambda: now[0], jitter=lambda: 0.0)

    assert (await tokens.get(KEY)).token == "token-1"
    namespace, account, body = api.bodies[0]
    assert (namespace, account) == ("shop", "builder")
    assert body["apiVersion"] == "authentication.k8s.io/v1" and body["kind"] == "TokenRequest"
    assert body["spec"] == {
        "expirationSeconds": 3600,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u-1"},
    }  # no audiences: the API server's own
    assert tokens.next_refresh("u-1") == now[0] + 2880

    now[0] += 2879
    assert (await tokens.get(KEY)).token == "token-1"  # still fresh: no request
    assert len(api.bodies) == 1
    now[0] += 2
    assert (await tokens.get(KEY)).token == "token-2"

    audience = TokenKey("shop", "builder", ("vault",), 600, "web", "u-1")
    await tokens.get(audience)
    assert api.bodies[-1][2]["spec"]["audiences"] == ["vault"]

    tokens.forget_pod("u-1")
    assert tokens.next_refresh("u-1") is None


async def test_token_manager_keeps_a_valid_token_when_refresh_fails():
    now = [1_000_000.0]
    api = TokenApi(lambda: now[0])
    tokens = TokenManager(api, clock=lambda: now[0], jitter=lambda: 0.0)
    await tokens.get(KEY)
    api.fail = True
    now[0] += 3000  # due for a refresh, still valid
    assert (await tokens.get(KEY)).token == "token-1"
    now[0] += 700  # expired
    with pytest.raises(TokenError, match="expired and refresh failed"):
        await tokens.get(KEY)
    other = TokenKey("shop", "builder", (), 3600, "other", "u-2")
    with pytest.raises(TokenError, match=r"^failed to fetch token: .*not found"):
        await tokens.get(other)


async def test_token_lifetime_is_what_the_server_granted():
    now = [0.0]
    api = TokenApi(lambda: now[0], granted=365 * 24 * 3600)
    tokens = TokenManager(api, clock=lambda: now[0], jitter=lambda: 0.0)
    await tokens.get(TokenKey("shop", "builder", (), 3607, "web", "u-1"))
    assert tokens.next_refresh("u-1") == MAX_TTL_SECONDS


# -- service env vars --------------------------------------------------------------------
def svc(name: str, namespace: str, ip: str, *ports: dict) -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
        "spec": {"clusterIP": ip, "ports": list(ports)},
    }


KUBERNETES = svc(
    "kubernetes", "default", "10.96.0.1", {"name": "https", "port": 443, "protocol": "TCP"}
)


def test_service_env_names_like_kubelet():
    assert from_services([KUBERNETES]) == {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
    }
    env = from_services(
        [
            svc(
                "my-db",
                "shop",
                "10.96.3.4",
                {"port": 5432},
                {"name": "metrics-port", "port": 9187, "protocol": "UDP"},
            )
        ]
    )
    assert env["MY_DB_SERVICE_HOST"] == "10.96.3.4"
    assert env["MY_DB_SERVICE_PORT"] == "5432"
    assert env["MY_DB_SERVICE_PORT_METRICS_PORT"] == "9187"
    assert env["MY_DB_PORT"] == "tcp://10.96.3.4:5432"
    assert env["MY_DB_PORT_9187_UDP"] == "udp://10.96.3.4:9187"
    assert env["MY_DB_PORT_9187_UDP_PROTO"] == "udp"
    assert "MY_DB_SERVICE_PORT_" not in "".join(k for k in env if k.endswith("_"))


def test_service_env_picks_services_like_kubelet():
    services = [
        KUBERNETES,
        svc("web", "shop", "10.96.0.9", {"port": 80}),
        svc("headless", "shop", "None", {"port": 80}),
        svc("pending", "shop", "", {"port": 80}),
        svc("other", "elsewhere", "10.96.0.8", {"port": 80}),
        svc("dns", "default", "10.96.0.10", {"port": 53}),
    ]
    env = service_env(services, namespace="shop", enable_links=True)
    hosts = {k for k in env if k.endswith("_SERVICE_HOST")}
    assert hosts == {"KUBERNETES_SERVICE_HOST", "WEB_SERVICE_HOST"}
    assert {
        k
        for k in service_env(services, namespace="shop", enable_links=False)
        if k.endswith("_SERVICE_HOST")
    } == {"KUBERNETES_SERVICE_HOST"}
    # a Service named kubernetes in the pod's own namespace wins, as in kubelet
    local = svc("kubernetes", "shop", "10.96.7.7", {"port": 443})
    assert (
        service_env([KUBERNETES, local], namespace="shop", enable_links=True)[
            "KUBERNETES_SERVICE_HOST"
        ]
        == "10.96.7.7"
    )


def test_service_lister_reads_the_informer_store_by_namespace():
    store = Store()
    for service in (
        KUBERNETES,
        svc("web", "shop", "10.96.0.9", {"port": 80}),
        svc("x", "elsewhere", "10.96.0.8", {"port": 80}),
    ):
        store.upsert(service)
    synced = [False]
    lister = ServiceLister(store, synced=lambda: synced[0])
    pod = {"metadata": {"name": "p", "namespace": "shop"}, "spec": {}}
    with pytest.raises(ServicesNotSynced, match="services have not yet been read"):
        lister.env_for(pod)
    synced[0] = True
    assert "WEB_SERVICE_HOST" in lister.env_for(pod)
    no_links = {**pod, "spec": {"enableServiceLinks": False}}
    assert "WEB_SERVICE_HOST" not in lister.env_for(no_links)
    assert "KUBERNETES_SERVICE_HOST" in lister.env_for(no_links)


# -- env from Secrets --------------------------------------------------------------------
ENV_POD = {"metadata": {"name": "p", "namespace": "shop", "uid": "u"}, "spec": {}}


def env_of(container: dict, secrets: dict, service: dict | None = None) -> dict:
    return resolve_env(
        container,
        ENV_POD,
        pod_ip=None,
        host_ip=None,
        config_maps={},
        secrets=secrets,
        service_env=service,
    )


def test_env_from_secret_key_refs_and_secret_refs():
    secrets = {"db": secret("db", user="admin", password="pw", **{"bad key": "x"})}
    container = {
        "name": "c",
        "envFrom": [{"secretRef": {"name": "db"}, "prefix": "DB_"}],
        "env": [
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {
                "name": "MAYBE",
                "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
            },
            {"name": "URL", "value": "https://$(KUBERNETES_SERVICE_HOST):$(DB_user)"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": "mine"},
        ],
    }
    service = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert env_of(container, secrets, service) == {
        "DB_user": "admin",
        "DB_password": "pw",  # "DB_bad key" is not a variable name: skipped
        "PASSWORD": "pw",
        "URL": "https://10.96.0.1:admin",
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "mine",  # the container's own env wins
    }


def test_env_from_missing_secret_or_key_is_a_config_error():
    missing = {
        "name": "c",
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}],
    }
    with pytest.raises(ContainerConfigError, match=r'^secret "gone" not found$'):
        env_of(missing, {})
    no_key = {
        "name": "c",
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}}],
    }
    with pytest.raises(ContainerConfigError, match="couldn't find key k in Secret shop/db"):
        env_of(no_key, {"db": secret("db")})
    env_from = {"name": "c", "envFrom": [{"secretRef": {"name": "gone"}}]}
    with pytest.raises(ContainerConfigError, match='secret "gone" not found'):
        env_of(env_from, {})
    optional = {"name": "c", "envFrom": [{"secretRef": {"name": "gone", "optional": True}}]}
    assert env_of(optional, {}) == {}


# -- volumes on a (fake) tmpfs -----------------------------------------------------------
def pod_with_volumes(*volumes: dict) -> dict:
    return {
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-9", "labels": {"a": "b"}},
        "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": list(volumes)},
    }


def test_secret_projected_and_downward_volumes_are_on_tmpfs(tmp_path):
    pod = pod_with_volumes(
        {"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400}},
        {"name": "cfg", "configMap": {"name": "cm"}},
        {"name": "scratch", "emptyDir": {}},
        {
            "name": "info",
            "downwardAPI": {
                "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
            },
        },
        {
            "name": "api",
            "projected": {
                "defaultMode": 0o440,
                "sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"configMap": {"name": "cm", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                    {"secret": {"name": "db", "items": [{"key": "user", "path": "db-user"}]}},
                ],
            },
        },
    )
    mounter = FakeMounter()
    sources = VolumeSources(
        config_maps={"cm": {"data": {"ca.crt": "CA"}}},
        secrets={"db": secret("db", user="admin")},
        tokens={("", 3607): "jwt"},
    )
    paths = prepare_volumes(
        pod, data_dir=tmp_path, config_maps=sources.config_maps, sources=sources, mounter=mounter
    )

    assert sorted(mounter.mounted) == sorted([paths["creds"], paths["info"], paths["api"]])
    assert atomic_writer.read(paths["creds"]) == {"user": b"admin"}
    assert mode_of(Path(paths["creds"]) / "user") == 0o400
    assert atomic_writer.read(paths["cfg"]) == {"ca.crt": b"CA"}
    assert atomic_writer.read(paths["info"]) == {"labels": b'a="b"'}
    assert atomic_writer.read(paths["api"]) == {
        "token": b"jwt",
        "ca.crt": b"CA",
        "namespace": b"shop",
        "db-user": b"admin",
    }
    assert mode_of(Path(paths["api"]) / "token") == 0o440

    remove_pod_dir(tmp_path, "u-9", mounter=mounter)
    assert mounter.mounted == set()
    assert not (tmp_path / "pods" / "u-9").exists()


def test_missing_secret_volume_errors_unless_optional(tmp_path):
    pod = pod_with_volumes({"name": "creds", "secret": {"secretName": "gone"}})
    with pytest.raises(VolumeSetupError) as caught:
        prepare_volumes(pod, data_dir=tmp_path, config_maps={}, mounter=FakeMounter())
    assert str(caught.value) == (
        'MountVolume.SetUp failed for volume "creds" : secret "gone" not found'
    )
    optional = pod_with_volumes(
        {"name": "creds", "secret": {"secretName": "gone", "optional": True}}
    )
    paths = prepare_volumes(optional, data_dir=tmp_path, config_maps={}, mounter=FakeMounter())
    assert atomic_writer.read(paths["creds"]) == {}


def test_projected_volume_reports_every_failing_source(tmp_path):
    pod = pod_with_volumes(
        {
            "name": "api",
            "projected": {"sources": [{"secret": {"name": "a"}}, {"configMap": {"name": "b"}}]},
        }
    )
    with pytest.raises(VolumeSetupError, match=r'\[secret "a" not found, configmap "b" not'):
        prepare_volumes(pod, data_dir=tmp_path, config_maps={}, mounter=FakeMounter())


def test_secret_update_is_rewritten_atomically(tmp_path):
    pod = pod_with_volumes({"name": "creds", "secret": {"secretName": "db"}})
    mounter = FakeMounter()
    first = VolumeSources(secrets={"db": secret("db", user="one", old="x")})
    paths = prepare_volumes(pod, data_dir=tmp_path, config_maps={}, sources=first, mounter=mounter)
    volume = Path(paths["creds"])
    old_data = os.readlink(volume / "..data")

    second = VolumeSources(secrets={"db": secret("db", user="two")})
    prepare_volumes(pod, data_dir=tmp_path, config_maps={}, sources=second, mounter=mounter)

    assert os.readlink(volume / "..data") != old_data
    assert not (volume / old_data).exists()
    assert (volume / "user").read_text() == "two"
    assert not os.path.lexists(volume / "old")
    assert mounter.history == [("mount", paths["creds"])]  # mounted once


def test_pod_dir_is_never_removed_through_a_live_mount(tmp_path):
    pod = pod_with_volumes({"name": "creds", "secret": {"secretName": "db"}})
    mounter = FakeMounter(stuck=True)
    sources = VolumeSources(secrets={"db": secret("db", user="u")})
    paths = prepare_volumes(
        pod, data_dir=tmp_path, config_maps={}, sources=sources, mounter=mounter
    )
    with pytest.raises(MountError):
        remove_pod_dir(tmp_path, "u-9", mounter=mounter)
    assert (Path(paths["creds"]) / "user").read_text() == "u"


def test_a_failed_tmpfs_mount_never_falls_back_to_disk(tmp_path):
    class NoMounts(FakeMounter):
        def ensure_tmpfs(self, path: str) -> None:
            raise MountError(1, f"cannot mount a tmpfs on {path}: Operation not permitted")

    pod = pod_with_volumes({"name": "creds", "secret": {"secretName": "db"}})
    sources = VolumeSources(secrets={"db": secret("db", user="u")})
    with pytest.raises(VolumeSetupError, match="cannot mount a tmpfs"):
        prepare_volumes(
            pod, data_dir=tmp_path, config_maps={}, sources=sources, mounter=NoMounts()
        )
    assert not list(tmp_path.rglob("user"))
