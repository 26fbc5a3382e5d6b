"""Raw HTTP watches against a real ``keelson apiserver``: the wire protocol clients rely on.

The server runs with a small watch-cache window and a short bookmark interval (the
``KEELSON_WATCH_*`` environment hooks) so 410 Gone and BOOKMARK events show up quickly.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.apiserver import ApiServer, running_apiserver, unique

WINDOW = 20


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    env = {"KEELSON_WATCH_CACHE_WINDOW": str(WINDOW), "KEELSON_WATCH_BOOKMARK_SECONDS": "0.5"}
    with running_apiserver(Path(tmp_path_factory.mktemp("watch")), env=env) as server:
        yield server


class WatchStream:
    """One open ``?watch=true`` response, read line by line."""

    def __init__(self, server: ApiServer, path: str, *, read_timeout: float = 10.0) -> None:
        self.connection = http.client.HTTPSConnection("127.0.0.1", server.port,
                                                      context=server.ssl_context(),
                                                      timeout=read_timeout)
        self.connection.request("GET", path)
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.read()

    def next(self) -> dict[str, Any] | None:
        """The next event, or None when the server ended the stream."""
        line = self.response.readline()
        return orjson.loads(line) if line.strip() else None

    def close(self) -> None:
        self.connection.close()


def create_configmap(server: ApiServer, namespace: str, name: str) -> str:
    code, _, body = server.http("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                                {"metadata": {"name": name}, "data": {"v": "0"}})
    assert code == 201, body
    return body["metadata"]["resourceVersion"]


def test_watch_resumes_from_resource_version(apiserver: ApiServer, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    start = create_configmap(apiserver, namespace, "kt-0")
    first = WatchStream(apiserver, f"{base}?watch=true&resourceVersion={start}")
    for i in range(1, 4):
        create_configmap(apiserver, namespace, f"kt-{i}")
    seen = [first.next() for _ in range(2)]
    first.close()  # disconnect after two of three events
    assert [e["object"]["metadata"]["name"] for e in seen] == ["kt-1", "kt-2"]
    resume_from = seen[-1]["object"]["metadata"]["resourceVersion"]

    apiserver.http("DELETE", f"{base}/kt-0")
    second = WatchStream(apiserver, f"{base}?watch=true&resourceVersion={resume_from}")
    rest = [second.next() for _ in range(2)]
    second.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in rest] == [
        ("ADDED", "kt-3"), ("DELETED", "kt-0")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in seen + rest]
    assert versions == sorted(versions) and len(set(versions)) == 4


def test_bookmarks(apiserver: ApiServer, namespace: str) -> None:
    rv = create_configmap(apiserver, namespace, "kt-b")
    stream = WatchStream(apiserver, f"/api/v1/namespaces/{namespace}/configmaps?watch=true"
                         f"&resourceVersion={rv}&allowWatchBookmarks=true")
    event = stream.next()
    stream.close()
    assert event is not None and event["type"] == "BOOKMARK"
    assert event["object"]["kind"] == "ConfigMap"
    assert int(event["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_no_bookmarks_unless_asked(apiserver: ApiServer, namespace: str) -> None:
    rv = create_configmap(apiserver, namespace, "kt-nb")
    stream = WatchStream(apiserver, f"/api/v1/namespaces/{namespace}/configmaps?watch=true"
                         f"&resourceVersion={rv}&timeoutSeconds=2")
    assert stream.next() is None
    stream.close()


def test_timeout_seconds_closes_the_stream(apiserver: ApiServer, namespace: str) -> None:
    started = time.monotonic()
    stream = WatchStream(apiserver, f"/api/v1/namespaces/{namespace}/configmaps?watch=true"
                         "&timeoutSeconds=1")
    assert stream.next() is None
    stream.close()
    assert 0.9 <= time.monotonic() - started < 5


def test_selector_watch_and_initial_list(apiserver: ApiServer, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    apiserver.http("POST", base, {"metadata": {"name": "kt-a", "labels": {"pick": "me"}}})
    apiserver.http("POST", base, {"metadata": {"name": "kt-b"}})
    stream = WatchStream(apiserver, f"{base}?watch=true&labelSelector=pick%3Dme")
    initial = stream.next()
    assert (initial["type"], initial["object"]["metadata"]["name"]) == ("ADDED", "kt-a")
    apiserver.http("PATCH", f"{base}/kt-b", {"metadata": {"labels": {"pick": "me"}}},
                   content_type="application/merge-patch+json")
    apiserver.http("PATCH", f"{base}/kt-a", {"metadata": {"labels": {"pick": "no"}}},
                   content_type="application/merge-patch+json")
    events = [stream.next() for _ in range(2)]
    stream.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "kt-b"), ("DELETED", "kt-a")]


def test_too_old_resource_version_gets_410(apiserver: ApiServer) -> None:
    namespace = unique()
    apiserver.http("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    old = create_configmap(apiserver, namespace, "kt-old")
    for i in range(WINDOW + 5):
        create_configmap(apiserver, namespace, f"kt-{i}")
    stream = WatchStream(apiserver, f"/api/v1/namespaces/{namespace}/configmaps?watch=true"
                         f"&resourceVersion={old}")
    event = stream.next()
    assert stream.next() is None
    stream.close()
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    assert "too old resource version" in event["object"]["message"]
