"""Expectations (writes not yet seen) and claiming (adopt / release) for the controllers."""

from __future__ import annotations

from apiclient.client import ApiClient
from apiclient.resources import PODS
from apiclient.selectors import selector_from_set
from apiclient.store import Store
from apiclient.testing import FakeApiServer
from controllers.ownership import Expectations, claim


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


async def test_claim_adopts_orphans_releases_mismatches_and_skips_others() -> None:
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
             "metadata": {"name": "web", "namespace": "ns", "uid": "owner-uid"}}
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "owner-uid",
           "controller": True, "blockOwnerDeletion": True}
    foreign = {**ref, "name": "other", "uid": "other-uid"}
    async with FakeApiServer() as server, ApiClient(server.config()) as client:
        pods = {
            "orphan": {"labels": {"app": "web"}},
            "stray": {"labels": {"app": "web"}, "ownerReferences": [foreign]},
            "owned": {"labels": {"app": "web"}, "ownerReferences": [ref]},
            "relabelled": {"labels": {"app": "api"}, "ownerReferences": [ref]},
            "unrelated": {"labels": {"app": "api"}},
        }
        candidates = [server.seed(PODS, {"metadata": {"name": name, "namespace": "ns", **meta}})
                      for name, meta in pods.items()]
        claimed = await claim(client, PODS, owner, selector_from_set({"app": "web"}),
                              candidates)
        assert sorted(p["metadata"]["name"] for p in claimed) == ["orphan", "owned"]
        stored = {key.split("/")[1]: o for (res, key), o in server.objects.items()}
        assert stored["orphan"]["metadata"]["ownerReferences"] == [ref]
        assert "ownerReferences" not in stored["relabelled"]["metadata"]
        assert stored["stray"]["metadata"]["ownerReferences"] == [foreign]
        assert "ownerReferences" not in stored["unrelated"]["metadata"]
