"""The ServiceAccounts controller and the root CA publisher: their decisions as tables, and
their loops against the in-memory API server (recreate what is deleted, restore what is
edited, leave terminating namespaces alone)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from apiclient.client import ApiClient
from apiclient.controller import SharedInformers
from apiclient.resources import CONFIGMAPS, NAMESPACES, SERVICEACCOUNTS
from apiclient.testing import FakeApiServer
from controllers.rootcacertpublisher import (
    DESCRIPTION,
    DESCRIPTION_ANNOTATION,
    RootCACertPublisher,
    desired_configmap,
    needs_update,
    updated_configmap,
)
from controllers.serviceaccounts import ServiceAccountsController, missing_service_accounts

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def namespace(name: str, *, terminating: bool = False) -> dict:
    ns: dict = {"metadata": {"name": name}, "status": {"phase": "Active"}}
    if terminating:
        ns["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        ns["status"]["phase"] = "Terminating"
    return ns


@pytest.mark.parametrize(("ns", "existing", "missing"), [
    (namespace("a"), [], ["default"]),
    (namespace("a"), ["default"], []),
    (namespace("a", terminating=True), [], []),
    (None, [], []),
])
def test_missing_service_accounts(ns, existing, missing):
    assert missing_service_accounts(ns, existing) == missing


def test_the_root_ca_configmap_and_when_it_needs_an_update():
    desired = desired_configmap("a", CA)
    assert desired["metadata"] == {"name": "kube-root-ca.crt", "namespace": "a",
                                   "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}}
    assert desired["data"] == {"ca.crt": CA}
    assert not needs_update(desired, CA)
    assert needs_update(desired, CA + "x")
    edited = {**desired, "data": {"ca.crt": CA, "extra": "1"}, "binaryData": {"b": "AA=="}}
    assert needs_update(edited, CA)
    restored = updated_configmap(edited, CA)
    assert restored["data"] == {"ca.crt": CA} and "binaryData" not in restored
    assert not needs_update(restored, CA)


async def eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def running() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer() as server:
        server.seed(NAMESPACES, namespace("default"))
        server.seed(NAMESPACES, namespace("going", terminating=True))
        client = ApiClient(server.config(ca_data=CA.encode()))
        informers = SharedInformers(client)
        loops = [ServiceAccountsController(client, informers),
                 RootCACertPublisher(client, informers)]
        informers.start()
        await informers.wait_synced(timeout=5)
        tasks = [asyncio.create_task(loop.run()) for loop in loops]
        try:
            yield server
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await informers.stop()
            await client.close()


async def test_every_active_namespace_gets_a_default_account_again_and_again(running):
    server = running
    key = (SERVICEACCOUNTS, "default/default")
    await eventually(lambda: key in server.objects, "default/default")
    server.seed(NAMESPACES, namespace("new"))
    await eventually(lambda: (SERVICEACCOUNTS, "new/default") in server.objects, "new/default")

    server.remove(SERVICEACCOUNTS, "new/default")
    await eventually(lambda: (SERVICEACCOUNTS, "new/default") in server.objects,
                     "new/default recreated")
    assert (SERVICEACCOUNTS, "going/default") not in server.objects


async def test_every_active_namespace_gets_the_root_ca_and_keeps_it(running):
    server = running
    key = (CONFIGMAPS, "default/kube-root-ca.crt")
    await eventually(lambda: key in server.objects, "kube-root-ca.crt")
    assert server.objects[key]["data"] == {"ca.crt": CA}

    edited = {**server.objects[key], "data": {"ca.crt": "tampered"}}
    server.seed(CONFIGMAPS, edited)
    await eventually(lambda: server.objects[key]["data"] == {"ca.crt": CA}, "restored CA")
    server.remove(CONFIGMAPS, "default/kube-root-ca.crt")
    await eventually(lambda: key in server.objects, "recreated kube-root-ca.crt")
    assert (CONFIGMAPS, "going/kube-root-ca.crt") not in server.objects
