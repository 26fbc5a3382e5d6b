"""One real ``keelson up`` per module (``tests.support.cluster``), isolated in netns.

The cluster is shared by the module because starting it costs seconds; tests isolate by
namespace (``namespace`` fixture), which the cluster's teardown deletes together with every
container of it. ``foreign_container`` stands for another cluster's pod on the same dockerd,
started before the cluster, so a test can check the new cluster leaves it alone.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import pytest

from nodeagent.runtime.interface import LABEL_POD_NAMESPACE, LABEL_POD_UID
from tests.support.cluster import (
    PYTHON,
    Cluster,
    remove_containers,
    running_cluster,
    running_containers,
    wait_for,
)

__all__ = ["PYTHON", "Cluster", "ForeignContainer", "running_containers", "wait_for"]


@dataclass
class ForeignContainer:
    """A running container labelled as a pod of another keelson cluster on this dockerd."""

    id: str
    namespace: str

    def exists(self) -> bool:
        api = docker.APIClient(version="1.41", timeout=60)
        try:
            return bool(api.containers(all=True, filters={"id": [self.id]}))
        finally:
            api.close()


@pytest.fixture(scope="module")
def foreign_container() -> Iterator[ForeignContainer]:
    """Started before ``keelson up``, as if another cluster (``make up``) shared dockerd."""
    namespace = f"kt-foreign-{secrets.token_hex(3)}"
    api = docker.APIClient(version="1.41", timeout=60)
    try:
        created = api.create_container(
            "localhost/keelson/busybox:1", ["sleep", "600"],
            labels={LABEL_POD_UID: namespace, LABEL_POD_NAMESPACE: namespace},
            host_config=api.create_host_config(network_mode="none"))
        api.start(created["Id"])
    finally:
        api.close()
    try:
        yield ForeignContainer(id=created["Id"], namespace=namespace)
    finally:
        remove_containers([namespace])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory,
            foreign_container: ForeignContainer) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("keelson-up")) as started:
        yield started


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    """A fresh namespace for one test; the module teardown deletes it and its containers."""
    name = f"kt-{secrets.token_hex(4)}"
    cluster.namespaces.append(name)
    cluster.kubectl("create", "namespace", name)
    return name
