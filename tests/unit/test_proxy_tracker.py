"""Change trackers and the coalescing runner (proxy/tracker.py, proxy/runner.py)."""

import asyncio

from proxy.objects import service_info, slice_info
from proxy.runner import CoalescingRunner
from proxy.tracker import endpoint_slice_tracker, service_tracker


def svc(name, port=80, rv="1"):
    return service_info({
        "metadata": {"namespace": "default", "name": name, "resourceVersion": rv},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": port}]},
    })


def eps(name, service, ips, when=None):
    meta = {"namespace": "default", "name": name, "labels": {"kubernetes.io/service-name": service}}
    if when:
        meta["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": when}
    return slice_info({
        "metadata": meta,
        "endpoints": [{"addresses": [ip]} for ip in ips],
        "ports": [{"port": 8080}],
    })


def test_merges_previous_and_current_per_key():
    tracker = service_tracker()
    first, second, third = svc("web", 80), svc("web", 81), svc("web", 82)
    assert tracker.update(None, first)
    assert tracker.update(first, second)
    assert tracker.update(second, third)
    drained = tracker.drain()
    assert drained.changes == {"default/web": (None, third)}
    assert drained.services == {"default/web"}
    assert tracker.pending() == 0 and tracker.drain().changes == {}


def test_add_then_delete_and_irrelevant_updates_cancel_out():
    tracker = service_tracker()
    web = svc("web")
    tracker.update(None, web)
    assert not tracker.update(web, None)
    assert tracker.pending() == 0
    assert not tracker.update(web, svc("web", rv="2"))  # only resourceVersion changed
    assert tracker.pending() == 0


def test_slice_changes_name_their_service_and_trigger_times():
    tracker = endpoint_slice_tracker()
    old = eps("web-abc", "web", ["10.244.0.5"])
    new = eps("web-abc", "web", ["10.244.0.6"], when="2026-01-01T00:00:10Z")
    tracker.update(None, eps("api-x", "api", ["10.244.0.9"]))
    tracker.update(old, new)
    drained = tracker.drain()
    assert drained.services == {"default/web", "default/api"}
    assert drained.trigger_times == [1767225610.0]


async def test_runner_coalesces_requests_and_respects_min_interval():
    runs = []

    async def work():
        runs.append(asyncio.get_running_loop().time())
        return True

    runner = CoalescingRunner(work, min_interval=0.2, max_interval=60, retry_interval=60)
    task = asyncio.create_task(runner.loop(iterations=2))
    await asyncio.sleep(0.05)
    for _ in range(10):
        runner.request()
    await asyncio.wait_for(task, 2)
    assert len(runs) == 2
    assert runs[1] - runs[0] >= 0.19


async def test_runner_runs_periodically_and_retries_failures():
    results = [False, True, True]
    runs = []

    async def work():
        runs.append(asyncio.get_running_loop().time())
        return results[len(runs) - 1]

    runner = CoalescingRunner(work, min_interval=0, max_interval=1.0, retry_interval=0.05)
    await asyncio.wait_for(runner.loop(iterations=3), 5)
    assert runs[1] - runs[0] < 0.5  # retry soon after the failure
    assert 0.95 <= runs[2] - runs[1] < 3  # then the periodic max interval


async def test_runner_survives_an_exception():
    calls = []

    async def work():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return True

    runner = CoalescingRunner(work, min_interval=0, max_interval=60, retry_interval=0.01)
    await asyncio.wait_for(runner.loop(iterations=2), 2)
    assert len(calls) == 2
