"""One behaviour suite run against the fake (``apiclient.testing.FakeApiServer``) and the
real ``keelson apiserver``: what the fake serves must answer as the real server does.

Unit tests use the fake for speed and for failures a real server cannot be made to show;
this suite is what keeps the fake honest (STYLE.md 7). Every test gets a ``Backend``: an
``ApiClient`` talking to one of the two, a namespace of its own (created on the real
server, deleted afterwards) and the two things that differ in how they are provoked:
forgetting watch history (the fake's ``compact()``; on the real server, writes beyond a
small watch-cache window) and BOOKMARKs (sent on demand by the fake; every 0.3 s by the
real server). What the fake deliberately does not emulate is listed in its docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apiclient import testing
from apiclient.client import ApiClient, WatchEvent
from apiclient.errors import (
    AlreadyExistsError,
    ApiError,
    BadRequestError,
    ConflictError,
    GoneError,
    InvalidError,
    MethodNotAllowedError,
    NotFoundError,
    UnauthorizedError,
)
from apiclient.kubeconfig import ClusterConfig
from apiclient.resources import (
    ALL_RESOURCES,
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    NAMESPACES,
    PODS,
    REPLICASETS,
    Resource,
)
from apiclient.testing import FakeApiServer
from apiserver.registry import Registry
from tests.support.apiserver import ApiServer, running_apiserver, unique

WINDOW = 10  # the real server's watch-cache window (events kept per resource)
BOOKMARK_SECONDS = 0.3
TOKEN = "parity-token"
NAME_CHARS = set("bcdfghjklmnpqrstvwxz2456789")


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    env = {"KEELSON_WATCH_CACHE_WINDOW": str(WINDOW),
           "KEELSON_WATCH_BOOKMARK_SECONDS": str(BOOKMARK_SECONDS)}
    with running_apiserver(Path(tmp_path_factory.mktemp("parity")), env=env) as server:
        yield server


@dataclass
class Backend:
    name: str  # "fake" or "real"
    client: ApiClient
    namespace: str
    anonymous: ClusterConfig  # reaches the server without credentials
    forget_history: Callable[[], Awaitable[None]]  # older ConfigMap watches now get 410
    bookmark: Callable[[], Awaitable[None]]  # a BOOKMARK reaches open watches that allow it


@pytest.fixture(params=["fake", "real"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "fake":
        async with FakeApiServer(token=TOKEN) as fake, ApiClient(fake.config()) as client:

            async def forget() -> None:
                fake.compact()

            async def bookmark() -> None:
                async with asyncio.timeout(5):
                    while not fake.open_watches:
                        await asyncio.sleep(0.01)
                fake.send_bookmark()

            yield Backend("fake", client, unique(), ClusterConfig(server=fake.url), forget,
                          bookmark)
        return

    server: ApiServer = request.getfixturevalue("apiserver")
    namespace = unique()
    async with ApiClient.from_kubeconfig(server.kubeconfig) as client:
        await client.create(NAMESPACES, {"metadata": {"name": namespace}})

        async def forget() -> None:
            # Push the ConfigMap watch window past every resourceVersion handed out so far.
            await client.create(CONFIGMAPS, {"metadata": {"name": "forget"}, "data": {"n": "0"}},
                                namespace=namespace)
            for n in range(1, WINDOW + 2):
                await client.patch(CONFIGMAPS, "forget", {"data": {"n": str(n)}},
                                   namespace=namespace)

        async def bookmark() -> None:
            pass  # the server sends one every BOOKMARK_SECONDS

        anonymous = ClusterConfig(server=server.url,
                                  ca_data=(server.data_dir / "pki" / "ca.crt").read_bytes())
        try:
            yield Backend("real", client, namespace, anonymous, forget, bookmark)
        finally:
            with contextlib.suppress(ApiError):
                await client.delete(NAMESPACES, namespace)


# --------------------------------------------------------------------------- objects


def configmap(name: str, **metadata: Any) -> dict:
    return {"metadata": {"name": name, **metadata}, "data": {"k": "v"}}


def pod(name: str, *, labels: dict | None = None, node: str = "", **spec: Any) -> dict:
    body: dict = {"metadata": {"name": name, "labels": labels or {}},
                  "spec": {"containers": [{"name": "c", "image": "localhost/x:1"}], **spec}}
    if node:
        body["spec"]["nodeName"] = node
    return body


def workload(name: str, replicas: int = 1) -> dict:
    return {"metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c",
                                                           "image": "localhost/x:1"}]}}}}


def names(items: list[dict]) -> list[str]:
    return [item["metadata"]["name"] for item in items]


async def collect(b: Backend, res: Resource, count: int, **watch: Any) -> list[WatchEvent]:
    """The first ``count`` events other than BOOKMARKs of a watch in the test's namespace."""
    events: list[WatchEvent] = []
    stream = b.client.watch(res, namespace=b.namespace, timeout_seconds=30, **watch)
    async with asyncio.timeout(10), contextlib.aclosing(stream):
        async for event in stream:
            if event.type != "BOOKMARK":
                events.append(event)
            if len(events) == count:
                break
    return events


# --------------------------------------------------------------------------- create / get


async def test_create_sets_what_the_server_owns(backend: Backend) -> None:
    b = backend
    sent = configmap("a", uid="forged", creationTimestamp="2000-01-01T00:00:00Z",
                     labels={"x": "1"})
    created = await b.client.create(CONFIGMAPS, sent, namespace=b.namespace)
    meta = created["metadata"]
    assert (created["kind"], created["apiVersion"]) == ("ConfigMap", "v1")
    assert meta["namespace"] == b.namespace
    assert meta["uid"] not in ("", "forged")
    assert meta["creationTimestamp"] != "2000-01-01T00:00:00Z"
    assert meta["resourceVersion"].isdigit()
    assert "generation" not in meta  # neither a spec nor a /status
    assert (meta["labels"], created["data"]) == ({"x": "1"}, {"k": "v"})
    assert await b.client.get(CONFIGMAPS, "a", namespace=b.namespace) == created

    first = await b.client.create(CONFIGMAPS, {"metadata": {"generateName": "web-"}},
                                  namespace=b.namespace)
    second = await b.client.create(CONFIGMAPS, {"metadata": {"generateName": "web-"}},
                                   namespace=b.namespace)
    for generated in (first["metadata"]["name"], second["metadata"]["name"]):
        assert generated.startswith("web-") and len(generated) == 9
        assert set(generated[4:]) <= NAME_CHARS
    assert first["metadata"]["name"] != second["metadata"]["name"]


async def test_create_of_an_existing_name_is_already_exists(backend: Backend) -> None:
    b = backend
    await b.client.create(CONFIGMAPS, configmap("a"), namespace=b.namespace)
    with pytest.raises(AlreadyExistsError) as caught:
        await b.client.create(CONFIGMAPS, configmap("a"), namespace=b.namespace)
    assert caught.value.body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'configmaps "a" already exists', "reason": "AlreadyExists", "code": 409,
        "details": {"name": "a", "kind": "configmaps"}}

    await b.client.create(DEPLOYMENTS, workload("web"), namespace=b.namespace)
    with pytest.raises(AlreadyExistsError) as caught:
        await b.client.create(DEPLOYMENTS, workload("web"), namespace=b.namespace)
    assert caught.value.message == 'deployments.apps "web" already exists'
    assert caught.value.body["details"] == {"name": "web", "kind": "deployments",
                                            "group": "apps"}


async def test_create_refuses_what_only_the_server_may_set(backend: Backend) -> None:
    b = backend
    with pytest.raises(BadRequestError):
        await b.client.create(CONFIGMAPS, configmap("a", namespace="elsewhere"),
                              namespace=b.namespace)
    with pytest.raises(BadRequestError):
        await b.client.create(CONFIGMAPS, configmap("a", resourceVersion="5"),
                              namespace=b.namespace)
    with pytest.raises(BadRequestError) as caught:
        await b.client.create(CONFIGMAPS, {**configmap("a"), "kind": "Secret"},
                              namespace=b.namespace)
    assert caught.value.message == ("the kind in the data (Secret) does not match the "
                                    "expected kind (ConfigMap)")
    with pytest.raises(InvalidError) as caught:
        await b.client.create(CONFIGMAPS, {"metadata": {}}, namespace=b.namespace)
    required = "Required value: name or generateName is required"
    assert caught.value.body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'ConfigMap "" is invalid: metadata.name: {required}',
        "reason": "Invalid", "code": 422,
        "details": {"name": "", "kind": "ConfigMap", "causes": [
            {"reason": "FieldValueRequired", "message": required, "field": "metadata.name"}]}}
    assert (await b.client.list(CONFIGMAPS, namespace=b.namespace))["items"] == []


async def test_missing_objects_are_not_found(backend: Backend) -> None:
    b = backend
    with pytest.raises(NotFoundError) as caught:
        await b.client.get(PODS, "nothing", namespace=b.namespace)
    assert caught.value.body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pods "nothing" not found', "reason": "NotFound", "code": 404,
        "details": {"name": "nothing", "kind": "pods"}}
    with pytest.raises(NotFoundError) as caught:
        await b.client.get(REPLICASETS, "nothing", namespace=b.namespace)
    assert caught.value.message == 'replicasets.apps "nothing" not found'
    for write in (
        b.client.replace(CONFIGMAPS, configmap("nothing"), namespace=b.namespace),
        b.client.patch(CONFIGMAPS, "nothing", {"data": {}}, namespace=b.namespace),
        b.client.delete(CONFIGMAPS, "nothing", namespace=b.namespace),
    ):
        with pytest.raises(NotFoundError) as caught:
            await write
        assert caught.value.message == 'configmaps "nothing" not found'
    await b.client.create(CONFIGMAPS, configmap("a"), namespace=b.namespace)
    with pytest.raises(NotFoundError):  # a ConfigMap has no /status
        await b.client.get(CONFIGMAPS, "a", namespace=b.namespace, subresource="status")


async def test_requests_the_server_cannot_serve(backend: Backend) -> None:
    b = backend
    await b.client.create(CONFIGMAPS, configmap("a"), namespace=b.namespace)
    named = CONFIGMAPS.path(namespace=b.namespace, name="a")
    with pytest.raises(MethodNotAllowedError):
        await b.client.request("POST", named, json=configmap("a"))
    with pytest.raises(BadRequestError):
        await b.client.request("POST", CONFIGMAPS.path(namespace=b.namespace),
                               data=b"{not json", headers={"Content-Type": "application/json"})
    with pytest.raises(NotFoundError):
        await b.client.request("GET", f"/api/v1/namespaces/{b.namespace}/nothings")


async def test_cluster_scoped_objects_and_their_status(backend: Backend) -> None:
    b = backend
    name = unique()
    created = await b.client.create(NAMESPACES, {"metadata": {"name": name,
                                                              "namespace": "ignored"}})
    assert "namespace" not in created["metadata"]
    assert created["status"] == {"phase": "Active"}
    assert await b.client.get(NAMESPACES, name, subresource="status") == created
    await b.client.delete(NAMESPACES, name)
    with pytest.raises(NotFoundError):
        await b.client.get(NAMESPACES, name)


# --------------------------------------------------------------------------- list


async def test_list_selects_by_label_and_field_in_name_order(backend: Backend) -> None:
    b = backend
    run = {"run": b.namespace}  # tells this test's pods from any other namespace's
    for name, app, node in (("p-b", "web", "n1"), ("p-a", "web", "n2"), ("p-c", "db", "n1")):
        await b.client.create(PODS, pod(name, labels={"app": app, **run}, node=node),
                              namespace=b.namespace)
    everything = await b.client.list(PODS, namespace=b.namespace)
    assert (everything["kind"], everything["apiVersion"]) == ("PodList", "v1")
    assert names(everything["items"]) == ["p-a", "p-b", "p-c"]
    assert everything["items"][0] == await b.client.get(PODS, "p-a", namespace=b.namespace)
    list_rv = int(everything["metadata"]["resourceVersion"])
    assert list_rv >= max(int(i["metadata"]["resourceVersion"]) for i in everything["items"])

    async def selected(**selectors: Any) -> list[str]:
        return names((await b.client.list(PODS, namespace=b.namespace, **selectors))["items"])

    assert await selected(label_selector="app=web") == ["p-a", "p-b"]
    assert await selected(label_selector="app!=web") == ["p-c"]
    assert await selected(field_selector="spec.nodeName=n1") == ["p-b", "p-c"]
    assert await selected(label_selector="app=web", field_selector="spec.nodeName=n1") == ["p-b"]
    assert await selected(field_selector="metadata.name=p-c,status.phase=Pending") == ["p-c"]
    assert await selected(resource_version="0") == ["p-a", "p-b", "p-c"]
    everywhere = await b.client.list(PODS, label_selector=f"run={b.namespace},app=web")
    assert names(everywhere["items"]) == ["p-a", "p-b"]

    with pytest.raises(BadRequestError) as caught:
        await selected(field_selector="spec.containers=x")
    assert caught.value.message == "field label not supported: spec.containers"
    with pytest.raises(BadRequestError):
        await selected(label_selector="app in (web")


async def test_list_pages_follow_the_continue_token(backend: Backend) -> None:
    b = backend
    for index in range(5):
        await b.client.create(CONFIGMAPS, configmap(f"cm-{index}", labels={"a": "b"}),
                              namespace=b.namespace)
    first = await b.client.list(CONFIGMAPS, namespace=b.namespace, limit=2)
    assert names(first["items"]) == ["cm-0", "cm-1"]
    assert first["metadata"]["remainingItemCount"] == 3
    token = first["metadata"]["continue"]

    # A page lists what exists now after the last name of the previous page.
    await b.client.create(CONFIGMAPS, configmap("cm-1a"), namespace=b.namespace)
    await b.client.delete(CONFIGMAPS, "cm-2", namespace=b.namespace)
    second = await b.client.list(CONFIGMAPS, namespace=b.namespace, limit=2,
                                 continue_token=token)
    assert names(second["items"]) == ["cm-1a", "cm-3"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert second["metadata"]["remainingItemCount"] == 1
    last = await b.client.list(CONFIGMAPS, namespace=b.namespace, limit=2,
                               continue_token=second["metadata"]["continue"])
    assert names(last["items"]) == ["cm-4"]
    assert last["metadata"] == {"resourceVersion": first["metadata"]["resourceVersion"]}

    selected = await b.client.list(CONFIGMAPS, namespace=b.namespace, limit=2,
                                   label_selector="a=b")
    assert names(selected["items"]) == ["cm-0", "cm-1"]
    assert "continue" in selected["metadata"]
    assert "remainingItemCount" not in selected["metadata"]  # not counted with a selector
    everything = await b.client.list_all(CONFIGMAPS, namespace=b.namespace, page_size=2)
    assert names(everything["items"]) == ["cm-0", "cm-1", "cm-1a", "cm-3", "cm-4"]
    with pytest.raises(BadRequestError):
        await b.client.list(CONFIGMAPS, namespace=b.namespace, continue_token="not-a-token")


# --------------------------------------------------------------------------- update / patch


async def test_update_with_a_stale_resource_version_is_a_conflict(backend: Backend) -> None:
    b = backend
    created = await b.client.create(CONFIGMAPS, configmap("a", labels={"x": "1"}),
                                    namespace=b.namespace)
    await b.client.patch(CONFIGMAPS, "a", {"data": {"k": "w"}}, namespace=b.namespace)
    with pytest.raises(ConflictError) as caught:
        await b.client.replace(CONFIGMAPS, created, namespace=b.namespace)
    assert caught.value.body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'Operation cannot be fulfilled on configmaps "a": the object has been '
                   "modified; please apply your changes to the latest version and try again",
        "reason": "Conflict", "code": 409, "details": {"name": "a", "kind": "configmaps"}}

    # Without a resourceVersion a PUT is unconditional, and it replaces the whole object,
    # except what the server owns.
    unconditional = {"metadata": {"name": "a", "uid": "forged"}, "data": {"k": "x"}}
    replaced = await b.client.replace(CONFIGMAPS, unconditional, namespace=b.namespace)
    assert replaced["data"] == {"k": "x"}
    assert "labels" not in replaced["metadata"]
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    assert replaced["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert int(replaced["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"])

    with pytest.raises(BadRequestError):
        path = CONFIGMAPS.path(namespace=b.namespace, name="a")
        await b.client.request("PUT", path, json=configmap("b"))


async def test_writes_that_change_nothing_are_not_written(backend: Backend) -> None:
    b = backend
    created = await b.client.create(CONFIGMAPS, configmap("a"), namespace=b.namespace)
    rv = created["metadata"]["resourceVersion"]
    assert await b.client.replace(CONFIGMAPS, created, namespace=b.namespace) == created
    patched = await b.client.patch(CONFIGMAPS, "a", {"data": {"k": "v"}}, namespace=b.namespace)
    assert patched["metadata"]["resourceVersion"] == rv
    assert (await b.client.get(CONFIGMAPS, "a", namespace=b.namespace)) == created
    marker = await b.client.create(CONFIGMAPS, configmap("z"), namespace=b.namespace)
    events = await collect(b, CONFIGMAPS, 1, resource_version=rv)
    assert [(e.type, e.object) for e in events] == [("ADDED", marker)]  # no MODIFIED before


async def test_merge_and_json_patches(backend: Backend) -> None:
    b = backend
    created = await b.client.create(CONFIGMAPS, configmap("a", labels={"x": "1"}),
                                    namespace=b.namespace)
    labelled = await b.client.patch(CONFIGMAPS, "a", {"metadata": {"labels": {"y": "2"}}},
                                    namespace=b.namespace)
    assert labelled["metadata"]["labels"] == {"x": "1", "y": "2"}
    removed = await b.client.patch(CONFIGMAPS, "a", {"metadata": {"labels": {"x": None}}},
                                   namespace=b.namespace)
    assert removed["metadata"]["labels"] == {"y": "2"}
    json_patched = await b.client.patch(
        CONFIGMAPS, "a", [{"op": "replace", "path": "/data/k", "value": "w"},
                          {"op": "add", "path": "/data/n", "value": "1"}],
        namespace=b.namespace, patch_type="json")
    assert json_patched["data"] == {"k": "w", "n": "1"}
    forged = await b.client.patch(CONFIGMAPS, "a", {"metadata": {"uid": "forged"}},
                                  namespace=b.namespace)
    assert forged["metadata"]["uid"] == created["metadata"]["uid"]

    with pytest.raises(InvalidError):
        await b.client.patch(CONFIGMAPS, "a", [{"op": "test", "path": "/data/k", "value": "no"}],
                             namespace=b.namespace, patch_type="json")
    stale = created["metadata"]["resourceVersion"]
    with pytest.raises(ConflictError):
        await b.client.patch(CONFIGMAPS, "a", {"metadata": {"resourceVersion": stale},
                                               "data": {"k": "z"}}, namespace=b.namespace)
    current = json_patched["metadata"]["resourceVersion"]
    guarded = await b.client.patch(CONFIGMAPS, "a", {"metadata": {"resourceVersion": current},
                                                     "data": {"k": "z"}}, namespace=b.namespace)
    assert guarded["data"]["k"] == "z"
    assert int(guarded["metadata"]["resourceVersion"]) > int(current)


async def test_generation_counts_spec_changes_only(backend: Backend) -> None:
    b = backend
    created = await b.client.create(DEPLOYMENTS, workload("web"), namespace=b.namespace)
    assert created["metadata"]["generation"] == 1
    labelled = await b.client.patch(DEPLOYMENTS, "web", {"metadata": {"labels": {"a": "b"}}},
                                    namespace=b.namespace)
    assert labelled["metadata"]["generation"] == 1
    scaled = await b.client.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 3}},
                                  namespace=b.namespace)
    assert scaled["metadata"]["generation"] == 2
    reported = await b.client.patch(DEPLOYMENTS, "web", {"status": {"replicas": 3}},
                                    namespace=b.namespace, subresource="status")
    assert reported["metadata"]["generation"] == 2
    assert reported["status"] == {"replicas": 3}


async def test_status_is_written_through_status_only(backend: Backend) -> None:
    b = backend
    sent = {**workload("rs", replicas=1), "status": {"replicas": 7}}
    created = await b.client.create(REPLICASETS, sent, namespace=b.namespace)
    assert created["status"] == {"replicas": 0}  # a create starts from the initial status
    new_pod = await b.client.create(PODS, {**pod("p"), "status": {"phase": "Running"}},
                                    namespace=b.namespace)
    assert new_pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}

    main = copy.deepcopy(created)
    main["spec"]["replicas"] = 3
    main["status"] = {"replicas": 5}
    updated = await b.client.replace(REPLICASETS, main, namespace=b.namespace)
    assert (updated["spec"]["replicas"], updated["status"]) == (3, {"replicas": 0})

    via_status = copy.deepcopy(updated)
    via_status["spec"]["replicas"] = 9
    via_status["status"] = {"replicas": 2}
    reported = await b.client.replace(REPLICASETS, via_status, namespace=b.namespace,
                                      subresource="status")
    assert (reported["spec"]["replicas"], reported["status"]) == (3, {"replicas": 2})
    patched = await b.client.patch(REPLICASETS, "rs", {"spec": {"replicas": 5},
                                                       "status": {"readyReplicas": 1}},
                                   namespace=b.namespace, subresource="status")
    assert patched["spec"]["replicas"] == 3
    assert patched["status"] == {"replicas": 2, "readyReplicas": 1}
    assert await b.client.get(REPLICASETS, "rs", namespace=b.namespace,
                              subresource="status") == patched


async def test_put_creates_the_kinds_that_allow_it(backend: Backend) -> None:
    b = backend
    event = {"metadata": {"name": "e1"}, "type": "Normal", "reason": "Tested",
             "message": "hello", "count": 1, "source": {"component": "parity"},
             "involvedObject": {"kind": "Pod", "name": "p", "namespace": b.namespace,
                                "apiVersion": "v1"}}
    created = await b.client.replace(EVENTS, event, namespace=b.namespace)
    assert created["metadata"]["uid"]
    assert created["message"] == "hello"
    listing = await b.client.list(EVENTS, namespace=b.namespace,
                                  field_selector="source=parity,reason=Tested")
    assert names(listing["items"]) == ["e1"]
    with pytest.raises(NotFoundError):  # not for a ConfigMap
        await b.client.replace(CONFIGMAPS, configmap("a"), namespace=b.namespace)


# --------------------------------------------------------------------------- delete


async def test_delete_answers_the_object_and_checks_preconditions(backend: Backend) -> None:
    b = backend
    created = await b.client.create(CONFIGMAPS, configmap("a"), namespace=b.namespace)
    meta = created["metadata"]
    with pytest.raises(ConflictError) as caught:
        await b.client.delete(CONFIGMAPS, "a", namespace=b.namespace,
                              preconditions={"uid": "someone-else"})
    assert caught.value.message == (
        'Operation cannot be fulfilled on configmaps "a": Precondition failed: UID in '
        f"precondition: someone-else, UID in object meta: {meta['uid']}")
    with pytest.raises(ConflictError) as caught:
        await b.client.delete(CONFIGMAPS, "a", namespace=b.namespace,
                              preconditions={"resourceVersion": "1"})
    assert caught.value.message == (
        'Operation cannot be fulfilled on configmaps "a": Precondition failed: '
        f"ResourceVersion in precondition: 1, ResourceVersion in object meta: "
        f"{meta['resourceVersion']}")

    deleted = await b.client.delete(CONFIGMAPS, "a", namespace=b.namespace,
                                    preconditions={"uid": meta["uid"],
                                                   "resourceVersion": meta["resourceVersion"]})
    assert deleted["metadata"]["uid"] == meta["uid"]
    assert int(deleted["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    with pytest.raises(NotFoundError):
        await b.client.get(CONFIGMAPS, "a", namespace=b.namespace)


async def test_finalizers_hold_a_deleted_object(backend: Backend) -> None:
    b = backend
    await b.client.create(CONFIGMAPS, configmap("held", finalizers=["example.com/hold"]),
                          namespace=b.namespace)
    marked = await b.client.delete(CONFIGMAPS, "held", namespace=b.namespace)
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert await b.client.get(CONFIGMAPS, "held", namespace=b.namespace) == marked
    again = await b.client.delete(CONFIGMAPS, "held", namespace=b.namespace)
    assert again == marked  # nothing changes
    with pytest.raises(InvalidError) as caught:
        await b.client.patch(CONFIGMAPS, "held",
                             {"metadata": {"finalizers": ["example.com/hold", "late"]}},
                             namespace=b.namespace)
    assert caught.value.message == (
        'ConfigMap "held" is invalid: metadata.finalizers: Forbidden: no new finalizers can '
        "be added if the object is being deleted")
    kept = await b.client.patch(CONFIGMAPS, "held", {"data": {"k": "w"}}, namespace=b.namespace)
    assert kept["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]

    released = await b.client.patch(CONFIGMAPS, "held", {"metadata": {"finalizers": None}},
                                    namespace=b.namespace)
    assert released["metadata"]["deletionTimestamp"]
    with pytest.raises(NotFoundError):
        await b.client.get(CONFIGMAPS, "held", namespace=b.namespace)


async def test_propagation_policy_hands_the_object_to_the_garbage_collector(
        backend: Backend) -> None:
    b = backend
    for name, policy, finalizers in (("orphan", "Orphan", ["orphan"]),
                                     ("fore", "Foreground", ["foregroundDeletion"])):
        await b.client.create(CONFIGMAPS, configmap(name), namespace=b.namespace)
        marked = await b.client.delete(CONFIGMAPS, name, namespace=b.namespace,
                                       propagation_policy=policy)
        assert marked["metadata"]["finalizers"] == finalizers
        assert marked["metadata"]["deletionTimestamp"]
        await b.client.patch(CONFIGMAPS, name, {"metadata": {"finalizers": None}},
                             namespace=b.namespace)  # as the garbage collector would
    await b.client.create(CONFIGMAPS, configmap("back"), namespace=b.namespace)
    await b.client.delete(CONFIGMAPS, "back", namespace=b.namespace,
                          propagation_policy="Background")
    assert (await b.client.list(CONFIGMAPS, namespace=b.namespace))["items"] == []
    with pytest.raises(BadRequestError):
        await b.client.delete(CONFIGMAPS, "back", namespace=b.namespace,
                              propagation_policy="Sideways")


async def test_a_pod_bound_to_a_node_is_deleted_gracefully(backend: Backend) -> None:
    b = backend
    await b.client.create(PODS, pod("bound", node="n1"), namespace=b.namespace)
    marked = await b.client.delete(PODS, "bound", namespace=b.namespace)
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["generation"] == 2
    shorter = await b.client.delete(PODS, "bound", namespace=b.namespace,
                                    grace_period_seconds=10)
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 10
    longer = await b.client.delete(PODS, "bound", namespace=b.namespace,
                                   grace_period_seconds=20)
    assert longer == shorter  # a longer grace period changes nothing
    reported = await b.client.patch(PODS, "bound", {"status": {"phase": "Running"}},
                                    namespace=b.namespace, subresource="status")
    assert reported["metadata"]["deletionGracePeriodSeconds"] == 10
    await b.client.delete(PODS, "bound", namespace=b.namespace, grace_period_seconds=0)
    with pytest.raises(NotFoundError):
        await b.client.get(PODS, "bound", namespace=b.namespace)

    await b.client.create(PODS, pod("own-grace", node="n1", terminationGracePeriodSeconds=5),
                          namespace=b.namespace)
    marked = await b.client.delete(PODS, "own-grace", namespace=b.namespace)
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 5
    await b.client.delete(PODS, "own-grace", namespace=b.namespace, grace_period_seconds=0)

    # Nothing to stop: unbound, or finished.
    await b.client.create(PODS, pod("unbound"), namespace=b.namespace)
    await b.client.create(PODS, pod("done", node="n1"), namespace=b.namespace)
    await b.client.patch(PODS, "done", {"status": {"phase": "Succeeded"}},
                         namespace=b.namespace, subresource="status")
    for name in ("unbound", "done"):
        deleted = await b.client.delete(PODS, name, namespace=b.namespace)
        assert "deletionGracePeriodSeconds" not in deleted["metadata"]
    assert (await b.client.list(PODS, namespace=b.namespace))["items"] == []


# --------------------------------------------------------------------------- watch


async def test_watch_from_a_resource_version_replays_in_order(backend: Backend) -> None:
    b = backend
    a = await b.client.create(CONFIGMAPS, configmap("a"), namespace=b.namespace)
    start = a["metadata"]["resourceVersion"]
    created = await b.client.create(CONFIGMAPS, configmap("b"), namespace=b.namespace)
    patched = await b.client.patch(CONFIGMAPS, "b", {"data": {"k": "w"}}, namespace=b.namespace)
    deleted = await b.client.delete(CONFIGMAPS, "a", namespace=b.namespace)
    events = await collect(b, CONFIGMAPS, 3, resource_version=start)
    assert [(e.type, e.object) for e in events] == [
        ("ADDED", created), ("MODIFIED", patched), ("DELETED", deleted)]

    # From the newest of them: only what comes next.
    later = asyncio.create_task(collect(b, CONFIGMAPS, 1,
                                        resource_version=deleted["metadata"]["resourceVersion"]))
    c = await b.client.create(CONFIGMAPS, configmap("c"), namespace=b.namespace)
    assert [(e.type, e.object) for e in await later] == [("ADDED", c)]


async def test_watch_without_resource_version_starts_from_the_current_state(
        backend: Backend) -> None:
    b = backend
    for name in ("c", "a", "b"):
        await b.client.create(CONFIGMAPS, configmap(name), namespace=b.namespace)
    stream = asyncio.create_task(collect(b, CONFIGMAPS, 4))
    await asyncio.sleep(0.2)
    await b.client.create(CONFIGMAPS, configmap("d"), namespace=b.namespace)
    events = await stream
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c"), ("ADDED", "d")]


async def test_selective_watch_sees_objects_enter_and_leave(backend: Backend) -> None:
    b = backend
    start = (await b.client.create(CONFIGMAPS, configmap("x", labels={"app": "db"}),
                                   namespace=b.namespace))["metadata"]["resourceVersion"]
    for labels in ({"app": "web"}, {"app": "web", "v": "2"}, {"app": "db"}):
        await b.client.patch(CONFIGMAPS, "x", {"metadata": {"labels": labels}},
                             namespace=b.namespace)
    await b.client.create(CONFIGMAPS, configmap("y", labels={"app": "web"}),
                          namespace=b.namespace)
    events = await collect(b, CONFIGMAPS, 4, resource_version=start, label_selector="app=web")
    assert [(e.type, e.object["metadata"]["name"], e.object["metadata"]["labels"])
            for e in events] == [
        ("ADDED", "x", {"app": "web"}),
        ("MODIFIED", "x", {"app": "web", "v": "2"}),
        ("DELETED", "x", {"app": "db", "v": "2"}),  # left the selection: the new state
        ("ADDED", "y", {"app": "web"}),
    ]

    start = (await b.client.create(PODS, pod("p1", node="n1"), namespace=b.namespace)
             )["metadata"]["resourceVersion"]
    await b.client.create(PODS, pod("p2", node="n2"), namespace=b.namespace)
    await b.client.delete(PODS, "p1", namespace=b.namespace, grace_period_seconds=0)
    events = await collect(b, PODS, 2, resource_version=str(int(start) - 1),
                           field_selector="spec.nodeName=n1")
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "p1"), ("DELETED", "p1")]


async def test_watch_from_forgotten_history_is_gone(backend: Backend) -> None:
    b = backend
    start = (await b.client.create(CONFIGMAPS, configmap("a"), namespace=b.namespace)
             )["metadata"]["resourceVersion"]
    await b.forget_history()
    with pytest.raises(GoneError) as caught:
        await collect(b, CONFIGMAPS, 1, resource_version=start)
    body = caught.value.body
    assert (body["kind"], body["status"], body["code"], body["reason"]) == (
        "Status", "Failure", 410, "Expired")
    assert body["message"].startswith(f"too old resource version: {start} (")


async def test_bookmarks_carry_only_a_resource_version(backend: Backend) -> None:
    b = backend
    rv = (await b.client.create(CONFIGMAPS, configmap("a"), namespace=b.namespace)
          )["metadata"]["resourceVersion"]

    async def first_event(**watch: Any) -> list[WatchEvent]:
        stream = b.client.watch(CONFIGMAPS, namespace=b.namespace, resource_version=rv,
                                **watch)
        async with asyncio.timeout(10), contextlib.aclosing(stream):
            async for event in stream:
                return [event]
        return []

    allowed = asyncio.create_task(first_event(timeout_seconds=5))
    await b.bookmark()
    [bookmark] = await allowed
    assert bookmark.type == "BOOKMARK"
    assert bookmark.object == {"kind": "ConfigMap", "apiVersion": "v1",
                               "metadata": {"resourceVersion": bookmark.object["metadata"][
                                   "resourceVersion"]}}
    assert int(bookmark.object["metadata"]["resourceVersion"]) >= int(rv)

    # Not asked for: none, and the stream ends cleanly at timeoutSeconds.
    refused = asyncio.create_task(first_event(timeout_seconds=1, allow_bookmarks=False))
    await b.bookmark()
    assert await refused == []


async def test_requests_without_credentials_are_unauthorized(backend: Backend) -> None:
    async with ApiClient(backend.anonymous) as anonymous:
        with pytest.raises(UnauthorizedError) as caught:
            await anonymous.list(PODS, namespace=backend.namespace)
    assert caught.value.body == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                 "status": "Failure", "message": "Unauthorized",
                                 "reason": "Unauthorized", "code": 401}


# --------------------------------------------------------------------------- kind table


def test_the_fakes_kind_table_is_the_registrys() -> None:
    """What the fake knows per kind (selectable fields, /status, the initial status,
    create on PUT) is what the real registry and strategies say."""
    registry = Registry()
    for res in ALL_RESOURCES:
        rt = registry.lookup(res.group, res.version, res.plural)
        assert rt is not None, res
        assert (rt.kind, rt.namespaced) == (res.kind, res.namespaced)
        kind = testing.KINDS[res]
        assert kind.fields == set(rt.fields), res
        assert kind.has_status == rt.has_status, res
        assert kind.create_on_update == rt.strategy.allow_create_on_update, res
        sample = {"metadata": {"name": "x", "namespace": "ns"},
                  "spec": {"containers": [{"name": "c", "image": "i",
                                           "resources": {"requests": {"cpu": "1"}}}]},
                  "status": {"sent": "by the client"}}
        real = copy.deepcopy(sample)
        rt.strategy.prepare_for_create(real)
        fake_status = kind.initial_status(sample) if kind.initial_status else sample["status"]
        assert real.get("status") == fake_status, res
