"""Time formats, object keys and owner references."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from apiclient.meta import (
    format_time,
    object_key,
    owner_reference,
    parse_time,
    split_key,
    utc_now,
    utc_now_micro,
)


def test_now_formats_match_kubernetes():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", utc_now())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", utc_now_micro())
    assert abs(parse_time(utc_now()) - datetime.now(UTC)) < timedelta(seconds=2)


def test_parse_time_returns_aware_utc():
    moment = parse_time("2026-11-24T23:07:35.123456Z")
    assert moment == datetime(2026, 11, 24, 23, 7, 35, 123456, tzinfo=UTC)
    assert parse_time("2026-11-25T01:07:35+02:00") == datetime(2026, 11, 24, 23, 7, 35, tzinfo=UTC)
    assert format_time(moment) == "2026-11-24T23:07:35Z"


@pytest.mark.parametrize("text", ["yesterday", "2026-11-24T23:07:35", ""])
def test_parse_time_rejects_non_rfc3339(text):
    with pytest.raises(ValueError):
        parse_time(text)


def test_object_key():
    assert object_key({"metadata": {"namespace": "ns", "name": "a"}}) == "ns/a"
    assert object_key({"metadata": {"name": "node1"}}) == "node1"
    assert object_key({"metadata": {"namespace": "", "name": "node1"}}) == "node1"
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("node1") == (None, "node1")


def test_owner_reference():
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-abc", "namespace": "default", "uid": "u-1"},
    }
    assert owner_reference(owner) == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web-abc",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert owner_reference(owner, controller=False)["controller"] is False
    with pytest.raises(ValueError, match="uid"):
        owner_reference({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}})
