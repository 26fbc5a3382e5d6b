"""Real-dockerd fixtures: a runtime and a unique pod uid whose containers are always removed;
and a real ``keelson apiserver`` (controllers off) shared by a module's agent tests."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import docker
import pytest

from nodeagent.runtime.docker import DockerRuntime
from nodeagent.runtime.interface import LABEL_POD_UID
from tests.support.apiserver import ApiServer, running_apiserver

PAUSE = "localhost/keelson/pause:1"
BUSYBOX = "localhost/keelson/busybox:1"


def _docker_available() -> bool:
    try:
        docker.APIClient(version="1.41", timeout=5).ping()
    except Exception:
        return False
    return True


def remove_labelled(label: str) -> None:
    """Remove every container carrying ``label`` (key=value); used on test teardown."""
    api = docker.APIClient(version="1.41", timeout=30)
    for item in api.containers(all=True, filters={"label": [label]}):
        api.remove_container(item["Id"], force=True, v=True)
    api.close()


@pytest.fixture
def pod_uid() -> str:
    uid = f"kt-{secrets.token_hex(6)}"
    yield uid
    remove_labelled(f"{LABEL_POD_UID}={uid}")


@pytest.fixture
async def runtime() -> AsyncIterator[DockerRuntime]:
    if not _docker_available():
        pytest.skip("needs a running dockerd")
    rt = DockerRuntime()
    yield rt
    await rt.close()


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One real apiserver per module; tests keep apart by node name and namespace."""
    with running_apiserver(tmp_path_factory.mktemp("apiserver")) as server:
        yield server
