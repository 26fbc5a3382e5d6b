"""Informer: list-then-watch against the fake API server, through every failure path."""

import asyncio

import pytest

from apiclient.client import ApiClient
from apiclient.informer import Informer
from apiclient.resources import PODS
from apiclient.store import namespace_index
from apiclient.testing import FakeApiServer


def pod(name, *, namespace="default", node="n1"):
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
        "spec": {"nodeName": node},
    }


class Recorder:
    """A handler that writes down what it was told, as names."""

    def __init__(self):
        self.events = []

    def on_add(self, obj):
        self.events.append(("add", obj["metadata"]["name"]))

    def on_update(self, old, new):
        assert old["metadata"]["name"] == new["metadata"]["name"]
        self.events.append(("update", new["metadata"]["name"]))

    def on_delete(self, obj):
        self.events.append(("delete", obj["metadata"]["name"]))

    def attach(self, informer):
        informer.add_handler(on_add=self.on_add, on_update=self.on_update, on_delete=self.on_delete)


@pytest.fixture
async def server():
    async with FakeApiServer() as fake:
        yield fake


@pytest.fixture
async def client(server):
    async with ApiClient(server.config()) as api:
        yield api


@pytest.fixture
async def make_informer(client):
    informers = []

    def make(**kwargs):
        kwargs.setdefault("backoff_initial", 0.01)
        informer = Informer(client, PODS, **kwargs)
        informers.append(informer)
        return informer

    yield make
    for informer in informers:
        await informer.stop()


async def until(condition, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def names(informer):
    return sorted(informer.store.keys())


async def test_events_converge_the_store(server, client, make_informer):
    server.seed(PODS, pod("a"))
    server.seed(PODS, pod("b", namespace="other"))
    informer = make_informer(indexers={"namespace": namespace_index})
    recorder = Recorder()
    recorder.attach(informer)
    assert not informer.has_synced
    informer.start()
    await informer.wait_synced(timeout=5)
    assert informer.has_synced
    assert names(informer) == ["default/a", "other/b"]
    assert sorted(recorder.events) == [("add", "a"), ("add", "b")]

    await client.create(PODS, pod("c"))
    await client.patch(PODS, "a", {"metadata": {"labels": {"app": "db"}}})
    await client.delete(PODS, "b", namespace="other", grace_period_seconds=0)  # bound: at once
    await until(lambda: len(recorder.events) == 5)
    assert recorder.events[2:] == [("add", "c"), ("update", "a"), ("delete", "b")]
    assert names(informer) == ["default/a", "default/c"]
    assert informer.store.get("default/a")["metadata"]["labels"] == {"app": "db"}
    assert [o["metadata"]["name"] for o in informer.store.by_index("namespace", "default")] == [
        "a",
        "c",
    ]
    assert informer.store.by_index("namespace", "other") == []
    assert informer.last_sync_resource_version == str(server.resource_version)


async def test_list_items_get_kind_and_api_version(server, make_informer):
    server.seed(PODS, pod("a"))
    informer = make_informer()
    informer.start()
    await informer.wait_synced(timeout=5)
    stored = informer.store.get("default/a")
    assert (stored["kind"], stored["apiVersion"]) == ("Pod", "v1")


async def test_selectors_are_sent_on_list_and_watch(server, make_informer):
    server.seed(PODS, pod("mine", node="n1"))
    server.seed(PODS, pod("theirs", node="n2"))
    informer = make_informer(field_selector="spec.nodeName=n1", label_selector="app=web")
    informer.start()
    await informer.wait_synced(timeout=5)
    await until(lambda: server.open_watches == 1)
    assert names(informer) == ["default/mine"]
    server.seed(PODS, pod("later", node="n2"))
    server.seed(PODS, pod("later-mine", node="n1"))
    await until(lambda: "default/later-mine" in informer.store)
    assert "default/later" not in informer.store
    for request in server.requests:
        assert request.query["fieldSelector"] == "spec.nodeName=n1"
        assert request.query["labelSelector"] == "app=web"


async def test_disconnect_resumes_from_the_last_resource_version(server, client, make_informer):
    server.seed(PODS, pod("a"))
    informer = make_informer()
    recorder = Recorder()
    recorder.attach(informer)
    informer.start()
    await informer.wait_synced(timeout=5)
    await client.create(PODS, pod("b"))
    await until(lambda: "default/b" in informer.store)
    await until(lambda: server.open_watches == 1)
    seen_rv = informer.last_sync_resource_version
    lists_before = sum(1 for r in server.requests if "watch" not in r.query)

    server.drop_watches()
    server.seed(PODS, pod("while-away"))  # happens while the informer is disconnected

    await until(lambda: "default/while-away" in informer.store)
    resumed = server.watch_requests()[-1]
    assert resumed.query["resourceVersion"] == seen_rv
    assert sum(1 for r in server.requests if "watch" not in r.query) == lists_before  # no relist
    assert recorder.events == [("add", "a"), ("add", "b"), ("add", "while-away")]


async def test_gone_relists_and_delivers_deletes_for_vanished_objects(server, make_informer):
    server.seed(PODS, pod("stays"))
    server.seed(PODS, pod("vanishes"))
    informer = make_informer()
    recorder = Recorder()
    recorder.attach(informer)
    informer.start()
    await informer.wait_synced(timeout=5)
    await until(lambda: server.open_watches == 1)

    server.drop_watches()
    server.remove(PODS, "default/vanishes")
    server.seed(PODS, pod("new"))
    server.compact()  # the informer's resourceVersion is now too old: 410 on re-watch

    await until(lambda: "default/new" in informer.store)
    assert names(informer) == ["default/new", "default/stays"]
    assert recorder.events[2:] == [("add", "new"), ("delete", "vanishes")]
    assert informer.last_sync_resource_version == str(server.resource_version)
    lists = [r for r in server.requests if "watch" not in r.query]
    assert len(lists) == 2


async def test_gone_error_event_on_a_live_watch_relists(server, make_informer):
    server.seed(PODS, pod("a"))
    server.gone_next_watches = 1
    informer = make_informer()
    informer.start()
    await informer.wait_synced(timeout=5)
    await until(lambda: len([r for r in server.requests if "watch" not in r.query]) == 2)
    await until(lambda: server.open_watches == 1)
    assert names(informer) == ["default/a"]


async def test_bookmarks_move_the_resource_version(server, client, make_informer):
    informer = make_informer()
    informer.start()
    await informer.wait_synced(timeout=5)
    await until(lambda: server.open_watches == 1)
    await client.create(PODS, pod("x", namespace="elsewhere"))
    informer_rv = informer.last_sync_resource_version
    server.resource_version += 10  # progress in other resources
    server.send_bookmark()
    await until(lambda: informer.last_sync_resource_version != informer_rv)
    assert informer.last_sync_resource_version == str(server.resource_version)


async def test_handler_exceptions_do_not_stop_the_informer(server, client, make_informer, caplog):
    informer = make_informer()
    calls = []

    def broken(obj):
        calls.append("broken")
        raise RuntimeError("handler bug")

    async def async_recorder(obj):
        await asyncio.sleep(0)
        calls.append(obj["metadata"]["name"])

    informer.add_handler(on_add=broken)
    informer.add_handler(on_add=async_recorder)
    informer.start()
    await informer.wait_synced(timeout=5)
    await client.create(PODS, pod("a"))
    await client.create(PODS, pod("b"))
    await until(lambda: "b" in calls)
    assert calls == ["broken", "a", "broken", "b"]
    assert names(informer) == ["default/a", "default/b"]
    assert "handler bug" in caplog.text


async def test_backoff_grows_with_jitter_and_resets_after_success(server, make_informer):
    server.fail_next_requests = 6
    informer = make_informer(backoff_initial=0.01, backoff_max=0.2)
    delays = []

    async def record_sleep(delay):
        delays.append(delay)
        await asyncio.sleep(0)

    informer._sleep = record_sleep
    informer.start()
    await informer.wait_synced(timeout=5)
    assert len(delays) == 6
    for attempt, delay in enumerate(delays):
        base = min(0.01 * 2**attempt, 0.2)
        assert min(base, 0.2) <= delay <= min(base * 1.5, 0.2)
    assert delays[-1] == 0.2  # capped
    assert informer.consecutive_failures == 0


async def test_watch_that_ends_at_once_backs_off(server, make_informer):
    server.close_watches_at_once = True
    informer = make_informer()
    delays = []

    async def record_sleep(delay):
        delays.append(delay)
        await asyncio.sleep(0)

    informer._sleep = record_sleep
    await informer.run(_iterations=3)
    assert informer.has_synced
    assert len(delays) == 3
    assert delays[0] < delays[2]
    assert informer.consecutive_failures == 3


async def test_wait_synced_times_out_while_the_server_fails(server, make_informer):
    server.fail_next_requests = 10_000
    informer = make_informer(backoff_initial=0.01, backoff_max=0.02)
    informer.start()
    with pytest.raises(TimeoutError):
        await informer.wait_synced(timeout=0.3)
    assert informer.consecutive_failures > 1


async def test_stop_ends_the_loop_and_closes_the_watch(server, make_informer):
    informer = make_informer()
    task = informer.start()
    await informer.wait_synced(timeout=5)
    await until(lambda: server.open_watches == 1)
    await informer.stop()
    assert task.cancelled()
    await until(lambda: server.open_watches == 0)


async def test_persistent_gone_backs_off_instead_of_spinning(server, make_informer):
    server.gone_next_watches = 3
    informer = make_informer()
    delays = []

    async def record_sleep(delay):
        delays.append(delay)
        await asyncio.sleep(0)

    informer._sleep = record_sleep
    await informer.run(_iterations=3)
    assert len(delays) == 3
    assert len([r for r in server.requests if "watch" not in r.query]) == 3
