"""Secret and projected volumes on a real tmpfs (root): mounted, written, unmounted, removed.

Each test works under its own temporary data dir; whatever it mounted there is unmounted
at the end even when an assertion failed, and nothing outside it is touched.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent import atomic_writer
from nodeagent.mounts import HostMounter, is_tmpfs, mounts
from nodeagent.volumes import VolumeSources, pod_dir, prepare_volumes, remove_pod_dir

pytestmark = pytest.mark.root

UID = "kt-secret-pod"


def fstype_at(path: str | Path) -> str | None:
    """The filesystem mounted exactly at ``path``, read from /proc/self/mountinfo."""
    real = os.path.realpath(path)
    found = [fstype for point, fstype in mounts() if point == real]
    return found[-1] if found else None


@pytest.fixture
def data_dir(tmp_path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    root = tmp_path / "agent"
    root.mkdir()
    try:
        yield root
    finally:
        HostMounter().unmount_all_under(str(root))  # only what this test mounted


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


POD = {
    "metadata": {"name": "web", "namespace": "shop", "uid": UID},
    "spec": {
        "containers": [{"name": "c", "image": "localhost/keelson/busybox:1"}],
        "volumes": [
            {"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400}},
            {"name": "cfg", "configMap": {"name": "cm"}},
            {
                "name": "api",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"path": "token"}},
                        {
                            "configMap": {
                                "name": "cm",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                    ]
                },
            },
        ],
    },
}


def sources(password: str) -> VolumeSources:
    return VolumeSources(
        config_maps={"cm": {"data": {"ca.crt": "CA"}}},
        secrets={"db": {"metadata": {"name": "db"}, "data": {"password": b64(password)}}},
        tokens={("", 3600): "jwt"},
    )


def test_secret_volumes_live_on_tmpfs_and_go_away_with_the_pod(data_dir):
    mounter = HostMounter()
    given = sources("one")
    paths = prepare_volumes(
        POD, data_dir=data_dir, config_maps=given.config_maps, sources=given, mounter=mounter
    )

    assert fstype_at(paths["creds"]) == "tmpfs"
    assert fstype_at(paths["api"]) == "tmpfs"
    assert fstype_at(paths["cfg"]) is None  # a ConfigMap stays on disk, as in kubelet
    assert is_tmpfs(paths["creds"])
    assert (Path(paths["creds"]) / "password").read_text() == "one"
    assert os.stat(Path(paths["creds"]) / "password").st_mode & 0o777 == 0o400
    assert atomic_writer.read(paths["api"]) == {"token": b"jwt", "ca.crt": b"CA"}

    # a second pass with a changed Secret rewrites in place, on the same mount
    updated = sources("two")
    prepare_volumes(
        POD, data_dir=data_dir, config_maps=updated.config_maps, sources=updated, mounter=mounter
    )
    assert (Path(paths["creds"]) / "password").read_text() == "two"
    assert [p for p, _ in mounts()].count(os.path.realpath(paths["creds"])) == 1

    remove_pod_dir(data_dir, UID, mounter=mounter)
    assert fstype_at(paths["creds"]) is None and fstype_at(paths["api"]) is None
    assert mounter.mount_points_under(str(pod_dir(data_dir, UID))) == []
    assert not pod_dir(data_dir, UID).exists()


def test_a_busy_tmpfs_is_detached_before_the_directory_goes(data_dir):
    mounter = HostMounter()
    given = sources("held")
    paths = prepare_volumes(
        POD, data_dir=data_dir, config_maps=given.config_maps, sources=given, mounter=mounter
    )
    with open(Path(paths["creds"]) / "password") as held:  # keeps the mount busy
        remove_pod_dir(data_dir, UID, mounter=mounter)
        assert fstype_at(paths["creds"]) is None
        assert not pod_dir(data_dir, UID).exists()
        assert held.read() == "held"  # the open file still reads from the detached tmpfs


def test_an_agent_restart_reuses_the_mount(data_dir):
    given = sources("one")
    paths = prepare_volumes(
        POD, data_dir=data_dir, config_maps=given.config_maps, sources=given, mounter=HostMounter()
    )
    # a new agent (new mounter) finds the tmpfs and does not stack a second one on it
    prepare_volumes(
        POD, data_dir=data_dir, config_maps=given.config_maps, sources=given, mounter=HostMounter()
    )
    assert [p for p, _ in mounts()].count(os.path.realpath(paths["creds"])) == 1
