"""apiclient's Informer against a real ``keelson apiserver`` that restarts mid-watch.

What a controller needs: after disconnects, restarts and 410s its local store ends equal
to the server's state, and resourceVersions keep growing across restarts (SQLite keeps
the revision), so a resumed watch never goes back in time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from apiclient import resources
from apiclient.client import ApiClient
from apiclient.informer import Informer
from tests.support.apiserver import ApiServer, running_apiserver

NAMESPACE = "default"


async def call(server: ApiServer, method: str, path: str, body: Any = None,
               **kwargs: Any) -> tuple[int, Any]:
    code, _, data = await asyncio.to_thread(server.http, method, path, body, **kwargs)
    return code, data


async def write_batch(server: ApiServer, tag: str, count: int) -> None:
    """Create ``count`` configmaps, update every second one, delete every third."""
    base = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    for i in range(count):
        code, body = await call(server, "POST", base, {"metadata": {"name": f"kt-{tag}-{i}"},
                                                       "data": {"v": "0"}})
        assert code == 201, body
    for i in range(0, count, 2):
        code, body = await call(server, "PATCH", f"{base}/kt-{tag}-{i}", {"data": {"v": "1"}},
                                content_type="application/merge-patch+json")
        assert code == 200, body
    for i in range(0, count, 3):
        code, body = await call(server, "DELETE", f"{base}/kt-{tag}-{i}")
        assert code == 200, body


async def server_state(server: ApiServer) -> dict[str, tuple[str, str]]:
    code, listing = await call(server, "GET", f"/api/v1/namespaces/{NAMESPACE}/configmaps")
    assert code == 200
    return {i["metadata"]["name"]: (i["metadata"]["resourceVersion"], i["data"]["v"])
            for i in listing["items"] if i["metadata"]["name"].startswith("kt-")}


def informer_state(informer: Informer) -> dict[str, tuple[str, str]]:
    return {o["metadata"]["name"]: (o["metadata"]["resourceVersion"], o["data"]["v"])
            for o in informer.store.list() if o["metadata"]["name"].startswith("kt-")}


async def converge(informer: Informer, server: ApiServer, *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    want = await server_state(server)
    while informer_state(informer) != want:
        assert time.monotonic() < deadline, (informer_state(informer), want)
        await asyncio.sleep(0.1)


async def test_informer_converges_across_restarts(own_apiserver: ApiServer) -> None:
    server = own_apiserver
    client = ApiClient.from_kubeconfig(server.kubeconfig)
    informer = Informer(client, resources.CONFIGMAPS, namespace=NAMESPACE,
                        backoff_initial=0.05, backoff_max=0.5)
    events: list[str] = []
    informer.add_handler(on_add=lambda o: events.append("add"),
                         on_update=lambda old, new: events.append("update"),
                         on_delete=lambda o: events.append("delete"))
    informer.start()
    try:
        await informer.wait_synced(timeout=10)
        await write_batch(server, "a", 12)
        await converge(informer, server)
        rv_before = int((await server_state(server))["kt-a-1"][0])

        # Changes right before the stop may be in flight on the watch when it breaks.
        await write_batch(server, "b", 12)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(0.5)  # the informer sees the server gone and backs off
        await asyncio.to_thread(server.start)
        await write_batch(server, "c", 12)
        await converge(informer, server)

        # A second restart while the informer is idle on a healthy watch.
        await asyncio.to_thread(server.restart)
        await write_batch(server, "d", 6)
        state = await server_state(server)
        await converge(informer, server)
    finally:
        await informer.stop()
        await client.close()

    versions = {name: int(rv) for name, (rv, _) in state.items()}
    assert min(v for n, v in versions.items() if n.startswith("kt-c")) > rv_before
    assert max(v for n, v in versions.items() if n.startswith("kt-c")) < \
        min(v for n, v in versions.items() if n.startswith("kt-d"))
    assert {"add", "update", "delete"} <= set(events)
    # 4 batches: 12+12+12+6 created, 4+4+4+2 deleted.
    assert len(state) == 42 - 14


async def test_resource_versions_survive_restart(own_apiserver: ApiServer) -> None:
    server = own_apiserver
    base = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    code, first = await call(server, "POST", base, {"metadata": {"name": "kt-persist"},
                                                    "data": {"v": "0"}})
    assert code == 201
    await asyncio.to_thread(server.restart)
    code, kept = await call(server, "GET", f"{base}/kt-persist")
    assert code == 200
    assert kept["metadata"]["uid"] == first["metadata"]["uid"]
    assert kept["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    code, later = await call(server, "POST", base, {"metadata": {"name": "kt-later"},
                                                    "data": {"v": "0"}})
    assert code == 201
    assert int(later["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    code, listing = await call(server, "GET", "/api/v1/namespaces")
    assert int(listing["metadata"]["resourceVersion"]) >= \
        int(later["metadata"]["resourceVersion"])


async def test_informer_relists_after_410(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """A selective informer falls out of a tiny watch window, gets 410 and relists."""
    caplog.set_level(logging.INFO, logger="apiclient.informer")
    env = {"KEELSON_WATCH_CACHE_WINDOW": "5"}
    with running_apiserver(tmp_path / "apiserver", env=env) as server:
        client = ApiClient.from_kubeconfig(server.kubeconfig)
        informer = Informer(client, resources.CONFIGMAPS, namespace=NAMESPACE,
                            label_selector="kt=rare", watch_timeout=1,
                            backoff_initial=0.05, backoff_max=0.5)
        informer.start()
        try:
            await informer.wait_synced(timeout=10)
            synced_at = int(informer.last_sync_resource_version)
            base = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
            for i in range(12):  # unselected churn pushes the informer's version out
                code, _ = await call(server, "POST", base, {"metadata": {"name": f"kt-n{i}"}})
                assert code == 201
            # Its 1 s watch ends; it resumes from a version the window no longer holds.
            await asyncio.sleep(1.5)
            code, _ = await call(server, "POST", base, {"metadata": {
                "name": "kt-rare", "labels": {"kt": "rare"}}, "data": {"v": "0"}})
            assert code == 201
            deadline = time.monotonic() + 15
            while [o["metadata"]["name"] for o in informer.store.list()] != ["kt-rare"]:
                assert time.monotonic() < deadline, informer.store.list()
                await asyncio.sleep(0.1)
        finally:
            await informer.stop()
            await client.close()
    assert int(informer.last_sync_resource_version) > synced_at + 12
    assert any("410" in r.getMessage() and "relisting" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


async def test_service_allocations_survive_restart(own_apiserver: ApiServer) -> None:
    server = own_apiserver
    base = f"/api/v1/namespaces/{NAMESPACE}/services"
    code, first = await call(server, "POST", base, {"metadata": {"name": "kt-a"}, "spec": {
        "type": "NodePort", "ports": [{"port": 80}]}})
    assert code == 201
    ip, node_port = first["spec"]["clusterIP"], first["spec"]["ports"][0]["nodePort"]
    await asyncio.to_thread(server.restart)
    code, taken = await call(server, "POST", base, {"metadata": {"name": "kt-b"}, "spec": {
        "clusterIP": ip, "ports": [{"port": 80}]}})
    assert (code, taken["reason"]) == (422, "Invalid")
    code, taken = await call(server, "POST", base, {"metadata": {"name": "kt-c"}, "spec": {
        "type": "NodePort", "ports": [{"port": 80, "nodePort": node_port}]}})
    assert (code, taken["reason"]) == (422, "Invalid")

    code, _ = await call(server, "DELETE", f"{base}/kt-a")
    assert code == 200
    await asyncio.to_thread(server.restart)
    code, again = await call(server, "POST", base, {"metadata": {"name": "kt-d"}, "spec": {
        "type": "NodePort", "clusterIP": ip, "ports": [{"port": 80, "nodePort": node_port}]}})
    assert code == 201, again
    assert (again["spec"]["clusterIP"], again["spec"]["ports"][0]["nodePort"]) == (ip, node_port)
