"""EventRecorder against a real ``keelson apiserver``: one Event per (object, reason,
message), counted up when repeated, and every Event it writes passes the server's Event
validation (recording is best effort and only logs a refusal, so only a real server shows
one)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from apiclient.client import ApiClient
from apiclient.events import EventRecorder
from apiclient.resources import EVENTS
from tests.support.apiserver import ApiServer


@pytest.fixture
async def client(apiserver: ApiServer) -> AsyncIterator[ApiClient]:
    async with ApiClient.from_kubeconfig(apiserver.kubeconfig) as api:
        yield api


def pod(namespace: str) -> dict:
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "web", "namespace": namespace, "uid": "u-1"}}


async def test_repeated_event_is_counted_not_duplicated(client: ApiClient, namespace: str) -> None:
    recorder = EventRecorder(client, component="kubelet", host="node-a")
    await recorder.record(pod(namespace), "Warning", "BackOff", "Back-off restarting")
    await recorder.record(pod(namespace), "Warning", "BackOff", "Back-off restarting")
    await recorder.record(pod(namespace), "Normal", "Pulled", "image present")
    events = (await client.list(EVENTS, namespace=namespace))["items"]
    by_reason = {e["reason"]: e for e in events}
    assert sorted(by_reason) == ["BackOff", "Pulled"]
    assert by_reason["BackOff"]["count"] == 2
    assert by_reason["BackOff"]["involvedObject"]["uid"] == "u-1"
    assert by_reason["BackOff"]["source"] == {"component": "kubelet", "host": "node-a"}


async def test_forget_starts_a_new_event(client: ApiClient, namespace: str) -> None:
    recorder = EventRecorder(client, component="default-scheduler")
    await recorder.record(pod(namespace), "Normal", "Scheduled", "assigned")
    recorder.forget("u-1")
    await recorder.record(pod(namespace), "Normal", "Scheduled", "assigned")
    events = (await client.list(EVENTS, namespace=namespace))["items"]
    assert len(events) == 2
