"""ApiClient against the in-memory fake API server over real HTTP on 127.0.0.1."""

import asyncio
import socket

import pytest
from aiohttp import web

from apiclient.client import ApiClient, retry_on_conflict
from apiclient.errors import (
    AlreadyExistsError,
    ConflictError,
    GoneError,
    InternalError,
    NotFoundError,
    TransportError,
    UnauthorizedError,
)
from apiclient.kubeconfig import ClusterConfig
from apiclient.resources import DEPLOYMENTS, NODES, PODS
from apiclient.selectors import label_selector_from_spec, parse_field_selector, selector_from_set
from apiclient.testing import FakeApiServer


def pod(name, *, namespace="default", labels=None, node=""):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "localhost/x:1"}]},
    }


@pytest.fixture
async def server():
    async with FakeApiServer(token="s3cret") as fake:
        yield fake


@pytest.fixture
async def client(server):
    async with ApiClient(server.config()) as api:
        yield api


async def test_crud_round_trip(client):
    created = await client.create(PODS, pod("web-1"), namespace="default")
    assert created["metadata"]["uid"]
    fetched = await client.get(PODS, "web-1", namespace="default")
    assert fetched == created

    fetched["metadata"]["labels"] = {"app": "web"}
    replaced = await client.replace(PODS, fetched)
    assert replaced["metadata"]["labels"] == {"app": "web"}
    assert int(replaced["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )

    patched = await client.patch(PODS, "web-1", {"metadata": {"labels": {"tier": "front"}}})
    assert patched["metadata"]["labels"] == {"app": "web", "tier": "front"}
    json_patched = await client.patch(
        PODS,
        "web-1",
        [{"op": "replace", "path": "/spec/nodeName", "value": "n1"}],
        patch_type="json",
    )
    assert json_patched["spec"]["nodeName"] == "n1"

    deleted = await client.delete(PODS, "web-1", namespace="default", grace_period_seconds=0)
    assert deleted["metadata"]["name"] == "web-1"
    with pytest.raises(NotFoundError) as caught:
        await client.get(PODS, "web-1", namespace="default")
    assert caught.value.status == 404
    assert caught.value.body["kind"] == "Status"


async def test_namespace_defaults_to_body_then_context(server):
    async with ApiClient(server.config(namespace="team-a")) as api:
        created = await api.create(PODS, pod("a", namespace="team-b"))
        assert created["metadata"]["namespace"] == "team-b"
        bare = pod("b")
        del bare["metadata"]["namespace"]
        await api.create(PODS, bare)
        assert (await api.get(PODS, "b"))["metadata"]["namespace"] == "team-a"
    assert [r.path for r in server.requests if r.method == "POST"] == [
        "/api/v1/namespaces/team-b/pods",
        "/api/v1/namespaces/team-a/pods",
    ]


async def test_typed_errors_for_conflicts(client):
    first = await client.create(PODS, pod("web-1"))
    with pytest.raises(AlreadyExistsError) as caught:
        await client.create(PODS, pod("web-1"))
    assert caught.value.status == 409
    assert caught.value.reason == "AlreadyExists"

    await client.patch(PODS, "web-1", {"metadata": {"labels": {"x": "1"}}})
    with pytest.raises(ConflictError):
        await client.replace(PODS, first)  # carries the old resourceVersion
    with pytest.raises(ConflictError):
        await client.delete(PODS, "web-1", preconditions={"uid": "someone-else"})


async def test_wrong_token_is_unauthorized(server):
    async with ApiClient(ClusterConfig(server=server.url, token="wrong")) as api:
        with pytest.raises(UnauthorizedError):
            await api.list(PODS)


async def test_unreachable_server_is_a_transport_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with ApiClient(ClusterConfig(server=f"http://127.0.0.1:{port}"), timeout=2) as api:
        with pytest.raises(TransportError, match="GET /api/v1/nodes"):
            await api.list(NODES)


async def test_list_sends_kubernetes_query_parameters(server, client):
    for name, labels, node in [
        ("a", {"app": "web"}, "n1"),
        ("b", {"app": "db"}, "n1"),
        ("c", {"app": "web"}, "n2"),
    ]:
        server.seed(PODS, pod(name, labels=labels, node=node))
    server.seed(PODS, pod("d", namespace="other", labels={"app": "web"}, node="n1"))

    listing = await client.list(
        PODS, label_selector="app=web", field_selector="spec.nodeName=n1", resource_version="0"
    )
    assert listing["kind"] == "PodList"
    assert sorted(item["metadata"]["name"] for item in listing["items"]) == ["a", "d"]
    assert server.requests[-1].path == "/api/v1/pods"
    assert server.requests[-1].query == {
        "labelSelector": "app=web",
        "fieldSelector": "spec.nodeName=n1",
        "resourceVersion": "0",
    }
    in_namespace = await client.list(PODS, namespace="other")
    assert [item["metadata"]["name"] for item in in_namespace["items"]] == ["d"]


async def test_list_all_follows_continue(server, client):
    for index in range(7):
        server.seed(PODS, pod(f"p{index}"))
    first_rv = str(server.resource_version)
    listing = await client.list_all(PODS, namespace="default", page_size=3)
    assert [item["metadata"]["name"] for item in listing["items"]] == [f"p{i}" for i in range(7)]
    assert listing["metadata"] == {"resourceVersion": first_rv}
    pages = [r for r in server.requests if r.path == "/api/v1/namespaces/default/pods"]
    assert len(pages) == 3
    assert all(page.query["limit"] == "3" for page in pages)
    assert "continue" in pages[1].query


async def test_list_all_falls_back_when_continue_expires(server, client):
    for index in range(4):
        server.seed(PODS, pod(f"p{index}"))
    real_list = client.list

    async def list_then_compact(*args, **kwargs):
        result = await real_list(*args, **kwargs)
        server.compact()  # the continue token handed out is now too old
        return result

    client.list = list_then_compact
    listing = await client.list_all(PODS, page_size=2)
    assert len(listing["items"]) == 4
    assert "limit" not in server.requests[-1].query


async def test_cluster_scoped_and_group_paths(server, client):
    await client.create(NODES, {"metadata": {"name": "n1"}})
    await client.create(DEPLOYMENTS, {"metadata": {"name": "web", "namespace": "prod"}})
    assert (await client.get(NODES, "n1"))["kind"] == "Node"
    assert (await client.get(DEPLOYMENTS, "web", namespace="prod"))["apiVersion"] == "apps/v1"
    assert [r.path for r in server.requests if r.method == "POST"] == [
        "/api/v1/nodes",
        "/apis/apps/v1/namespaces/prod/deployments",
    ]


async def test_watch_streams_events_with_parameters(server, client):
    created = server.seed(PODS, pod("a"))
    received = []

    async def consume():
        async for event in client.watch(
            PODS,
            namespace="default",
            resource_version=created["metadata"]["resourceVersion"],
            timeout_seconds=5,
        ):
            metadata = event.object["metadata"]
            received.append((event.type, metadata.get("name") or metadata["resourceVersion"]))
            if len(received) == 3:
                return

    task = asyncio.create_task(consume())
    await _until(lambda: server.open_watches == 1)
    server.seed(PODS, pod("b"))
    server.send_bookmark()
    server.remove(PODS, "default/a")
    await asyncio.wait_for(task, 5)
    assert received[0] == ("ADDED", "b")
    assert received[1] == ("BOOKMARK", str(server.resource_version - 1))
    assert received[2] == ("DELETED", "a")
    query = server.watch_requests()[-1].query
    assert query["watch"] == "true"
    assert query["allowWatchBookmarks"] == "true"
    assert query["timeoutSeconds"] == "5"
    assert query["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_watch_handles_large_objects_split_across_chunks(server, client):
    big = pod("big", labels={"app": "web"})
    big["metadata"]["annotations"] = {"blob": "x" * 400_000}
    server.seed(PODS, big)
    async for event in client.watch(PODS, timeout_seconds=5):
        assert event.object["metadata"]["annotations"]["blob"] == "x" * 400_000
        break


async def test_watch_error_410_raises_gone(server, client):
    server.gone_next_watches = 1
    with pytest.raises(GoneError) as caught:
        async for _ in client.watch(PODS, resource_version="5"):
            pass
    assert caught.value.status == 410


async def test_watch_dropped_connection_is_a_transport_error(server, client):
    server.seed(PODS, pod("a"))

    async def consume():
        async for _ in client.watch(PODS, timeout_seconds=30):
            pass

    task = asyncio.create_task(consume())
    await _until(lambda: server.open_watches == 1)
    server.drop_watches()
    with pytest.raises(TransportError):
        await asyncio.wait_for(task, 5)


async def test_retry_on_conflict_rereads_until_it_wins(server, client):
    server.seed(PODS, pod("a"))
    attempts = 0

    async def bump():
        nonlocal attempts
        attempts += 1
        current = await client.get(PODS, "a")
        if attempts < 3:  # someone else writes between our read and our write
            await client.patch(PODS, "a", {"metadata": {"labels": {"other": str(attempts)}}})
        current["metadata"]["labels"]["count"] = "1"
        return await client.replace(PODS, current)

    result = await retry_on_conflict(bump, backoff=0.001)
    assert attempts == 3
    assert result["metadata"]["labels"] == {"other": "2", "count": "1"}


async def test_retry_on_conflict_gives_up_and_does_not_retry_other_errors():
    calls = 0

    async def always_conflict():
        nonlocal calls
        calls += 1
        raise ConflictError(409, "Conflict", "stale", {})

    with pytest.raises(ConflictError):
        await retry_on_conflict(always_conflict, attempts=3, backoff=0.001)
    assert calls == 3

    async def broken():
        nonlocal calls
        calls += 1
        raise InternalError(500, "InternalError", "boom", {})

    calls = 0
    with pytest.raises(InternalError):
        await retry_on_conflict(broken, backoff=0.001)
    assert calls == 1


async def test_raw_request_gives_the_response(server, client):
    server.seed(PODS, pod("a"))
    async with await client.request("GET", "/api/v1/namespaces/default/pods/a") as response:
        assert response.status == 200
        assert (await response.json())["metadata"]["name"] == "a"
    server.fail_next_requests = 1
    with pytest.raises(InternalError, match="injected failure"):
        await client.request("GET", "/api/v1/namespaces/default/pods/a")


async def test_unknown_patch_type_is_rejected(client):
    with pytest.raises(ValueError, match="unknown patch type"):
        await client.patch(PODS, "a", {}, patch_type="apply")


async def _until(condition, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_selector_objects_are_sent_as_text_and_nothing_is_refused(server, client):
    server.seed(PODS, pod("a", labels={"app": "web"}, node="n1"))
    listing = await client.list(
        PODS,
        label_selector=selector_from_set({"app": "web"}),
        field_selector=parse_field_selector("spec.nodeName=n1"),
    )
    assert len(listing["items"]) == 1
    assert server.requests[-1].query == {
        "labelSelector": "app=web",
        "fieldSelector": "spec.nodeName=n1",
    }
    with pytest.raises(ValueError, match="matches nothing"):
        await client.list(PODS, label_selector=label_selector_from_spec(None))


async def test_watch_reassembles_lines_split_anywhere():
    first = b'{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"1"}}}\n'
    second = b'{"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"2"}}}'

    async def dribble(request):
        response = web.StreamResponse()
        await response.prepare(request)
        for piece in (first[:7], first[7:30], first[30:] + second[:12], second[12:]):
            await response.write(piece)
            await asyncio.sleep(0.02)
        return response  # the last event has no trailing newline

    app = web.Application()
    app.router.add_get("/api/v1/pods", dribble)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with ApiClient(ClusterConfig(server=f"http://127.0.0.1:{port}")) as api:
            events = [
                (e.type, e.object["metadata"]["resourceVersion"]) async for e in api.watch(PODS)
            ]
    finally:
        await runner.cleanup()
    assert events == [("ADDED", "1"), ("MODIFIED", "2")]
