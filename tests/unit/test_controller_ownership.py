"""Expectations (writes not yet seen) for the controllers. Claiming (adopt / release) runs
against a real apiserver in tests/e2e/workloads/test_replicaset_alone.py."""

from __future__ import annotations

from apiclient.store import Store
from controllers.ownership import Expectations


def obj(name: str, *, deleting: bool = False) -> dict:
    meta: dict = {"name": name, "namespace": "ns"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-24T12:00:00Z"
    return {"metadata": meta}


def test_expectations_wait_for_creates_and_deletes_to_be_seen() -> None:
    store = Store()
    store.upsert(obj("doomed"))
    expectations = Expectations()
    expectations.expect("ns/rs", creates=["ns/new"], deletes=["ns/doomed"])
    assert not expectations.satisfied("ns/rs", store)
    store.upsert(obj("new"))
    assert not expectations.satisfied("ns/rs", store)  # the delete is not seen yet
    store.upsert(obj("doomed", deleting=True))  # terminating counts as deleted
    assert expectations.satisfied("ns/rs", store)
    assert expectations.satisfied("ns/other", store)  # nothing expected


def test_expectations_time_out() -> None:
    expectations = Expectations(timeout=0.0)
    expectations.expect("ns/rs", creates=["ns/never"])
    assert expectations.satisfied("ns/rs", Store())
