"""Fixtures for the apiserver e2e tests: a real ``keelson apiserver`` per module (or per
test when it restarts it), a namespace per test, and the official client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apiserver import ApiServer, running_apiserver, unique


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One server shared by a module; tests isolate themselves with a namespace each."""
    with running_apiserver(tmp_path_factory.mktemp("apiserver")) as server:
        yield server


@pytest.fixture
def own_apiserver(tmp_path: Path) -> Iterator[ApiServer]:
    """A server of the test's own, for tests that restart it."""
    with running_apiserver(tmp_path / "apiserver") as server:
        yield server


@pytest.fixture
def namespace(apiserver: ApiServer) -> Iterator[str]:
    name = unique()
    code, _, body = apiserver.http("POST", "/api/v1/namespaces",
                                   {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": name}})
    assert code == 201, body
    yield name
    if apiserver.process is not None:
        apiserver.http("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture(scope="module")
def k8s(apiserver: ApiServer) -> Iterator[Any]:
    """The official client's ApiClient, configured from the admin kubeconfig."""
    kubernetes = pytest.importorskip("kubernetes")
    client = kubernetes.config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    yield client
    client.close()
