"""EventRecorder: one Event per (object, reason, message), counted up when repeated."""

from __future__ import annotations

from apiclient.client import ApiClient
from apiclient.events import EventRecorder
from apiclient.resources import EVENTS
from apiclient.testing import FakeApiServer

POD = {"kind": "Pod", "apiVersion": "v1",
       "metadata": {"name": "web", "namespace": "default", "uid": "u-1"}}


async def test_repeated_event_is_counted_not_duplicated() -> None:
    async with FakeApiServer() as server, ApiClient(server.config()) as client:
        recorder = EventRecorder(client, component="kubelet", host="node-a")
        await recorder.record(POD, "Warning", "BackOff", "Back-off restarting")
        await recorder.record(POD, "Warning", "BackOff", "Back-off restarting")
        await recorder.record(POD, "Normal", "Pulled", "image present")
        events = (await client.list(EVENTS, namespace="default"))["items"]
        by_reason = {e["reason"]: e for e in events}
        assert sorted(by_reason) == ["BackOff", "Pulled"]
        assert by_reason["BackOff"]["count"] == 2
        assert by_reason["BackOff"]["involvedObject"]["uid"] == "u-1"
        assert by_reason["BackOff"]["source"] == {"component": "kubelet", "host": "node-a"}


async def test_forget_starts_a_new_event() -> None:
    async with FakeApiServer() as server, ApiClient(server.config()) as client:
        recorder = EventRecorder(client, component="default-scheduler")
        await recorder.record(POD, "Normal", "Scheduled", "assigned")
        recorder.forget("u-1")
        await recorder.record(POD, "Normal", "Scheduled", "assigned")
        events = (await client.list(EVENTS, namespace="default"))["items"]
        assert len(events) == 2
