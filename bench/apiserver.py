"""apiserver benchmark: write throughput, watch latency, LIST latency and RSS at 10,000 pods.

Run from the repo root:  .venv/bin/python -m bench.apiserver   (about one minute)

It starts its own `keelson apiserver` on a free 127.0.0.1 port in a temporary directory
(controllers disabled, so only the apiserver's own work is measured), drives it over HTTPS
with the admin kubeconfig's client certificate, and ends that process by PID at the end,
also on failure. Every phase is bounded by a count and by `--phase-seconds`.

Phases, in order (each figure is printed in the final table):
1. floor: 16 concurrent clients doing only an authenticated GET /version: the HTTP+TLS
   ceiling of one server process, to read the write figures against.
2. creates: 16 concurrent writers create `--pods` realistic pods (two containers, labels,
   env, about 1.5 KB of JSON) in one namespace; that population is reused below.
3. updates: the same writers update pods by merge PATCH, then by GET + PUT of the read
   object; a write is counted when the server answered 2xx.
4. memory: server RSS after the creates and a pause for garbage collection.
5. LIST: full lists of all pods, a label-selected list (1 in 50 pods), and a full walk
   with limit=500 pages; latency is until the last byte of the body arrived.
6. watch: `--watchers` HTTP watch streams on one namespace, in a separate process, while
   one writer makes `--changes` changes at `--rate` per second. Each write carries its send
   time (wall clock, same machine) in an annotation; a watcher's latency is its receive
   time of the chunk holding the event minus that send time.

Server and client share the machine's CPUs, so the server's CPU use per phase is printed
next to each figure: a server near 100% of one core is the bottleneck, one well below it
means the client (or waiting) is.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import queue
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from apiclient.kubeconfig import load_kubeconfig
from apiclient.resources import NAMESPACES, PODS

from ._util import (
    KeelsonProcess,
    cpu_seconds,
    machine_summary,
    percentile,
    rss_bytes,
    start_apiserver,
)

LOAD_NAMESPACE = "keel-bench"
WATCH_NAMESPACE = "keel-bench-watch"
SENT_ANNOTATION = "bench.keelson.io/sent-ns"
APP_GROUPS = 50  # label app=bench-<i % 50>: a label selector picks 1 pod in 50
WARMUP_POD = "keel-warmup"
DONE_POD = "keel-done"
WATCHED_PODS = 50  # the watch writer creates these, then keeps patching them

TARGET_WRITES_PER_SECOND = 1000.0
TARGET_WATCH_P99_MS = 50.0
TARGET_RSS_MB = 150.0


# ---------------------------------------------------------------- objects


def pod_body(index: int, *, namespace: str, name: str | None = None) -> dict:
    """A realistic pod: two containers, labels, env, resources, probes (about 1.5 KB)."""
    app = f"bench-{index % APP_GROUPS}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name or f"keel-pod-{index:05d}",
            "namespace": namespace,
            "labels": {"app": app, "tier": "web" if index % 2 else "worker", "bench": "keelson"},
            "annotations": {"bench.keelson.io/index": str(index)},
        },
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": "app",
                    "image": "localhost/keelson/busybox:1",
                    "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [
                        {"name": "APP_NAME", "value": app},
                        {"name": "APP_INDEX", "value": str(index)},
                        {"name": "LOG_LEVEL", "value": "info"},
                        {"name": "LISTEN_ADDRESS", "value": "0.0.0.0:8080"},
                    ],
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "32Mi"},
                        "limits": {"cpu": "200m", "memory": "64Mi"},
                    },
                    "readinessProbe": {
                        "httpGet": {"path": "/", "port": 8080},
                        "periodSeconds": 5,
                    },
                },
                {
                    "name": "sidecar",
                    "image": "localhost/keelson/busybox:1",
                    "command": ["sh", "-c", "while true; do date; sleep 30; done"],
                    "env": [{"name": "SIDECAR_INTERVAL", "value": "30"}],
                    "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}},
                },
            ],
        },
    }


# ---------------------------------------------------------------- load running


@dataclass
class PhaseResult:
    """What one load phase achieved, with the server's CPU use over its wall time."""

    done: int = 0
    errors: int = 0
    first_error: str = ""
    seconds: float = 0.0
    server_cpu: float = 0.0  # server CPU seconds / wall seconds (1.0 = one core busy)
    client_cpu: float = 0.0  # the same for the benchmark's own client process
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


class RequestFailed(Exception):
    """The server answered a benchmark request with a failure status."""


async def _checked(response: aiohttp.ClientResponse) -> bytes:
    body = await response.read()
    if response.status >= 300:
        raise RequestFailed(f"HTTP {response.status}: {body[:300]!r}")
    return body


async def run_concurrently(
    operation: Callable[[int], Awaitable[None]],
    *,
    count: int,
    concurrency: int,
    time_limit: float,
    server_pid: int,
) -> PhaseResult:
    """Run operation(0..count-1) from `concurrency` workers; stop early at `time_limit`."""
    result = PhaseResult()
    next_index = 0
    deadline = time.monotonic() + time_limit

    async def worker() -> None:
        nonlocal next_index
        while next_index < count and time.monotonic() < deadline:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            try:
                await operation(index)
            except (RequestFailed, aiohttp.ClientError, TimeoutError) as error:
                result.errors += 1
                result.first_error = result.first_error or f"{type(error).__name__}: {error}"
                continue
            result.latencies.append(time.perf_counter() - started)
            result.done += 1

    cpu_before, client_before = cpu_seconds(server_pid), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    result.server_cpu = (cpu_seconds(server_pid) - cpu_before) / result.seconds
    result.client_cpu = (time.process_time() - client_before) / result.seconds
    return result


# ---------------------------------------------------------------- phases


@dataclass
class Bench:
    server: KeelsonProcess
    session: aiohttp.ClientSession
    args: argparse.Namespace

    def url(self, path: str) -> str:
        return self.server.server + path

    async def run(self, operation: Callable[[int], Awaitable[None]], count: int) -> PhaseResult:
        return await run_concurrently(
            operation,
            count=count,
            concurrency=self.args.writers,
            time_limit=self.args.phase_seconds,
            server_pid=self.server.pid,
        )

    async def create_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        async with self.session.post(self.url(NAMESPACES.path()), json=body) as response:
            await _checked(response)


async def phase_floor(bench: Bench) -> PhaseResult:
    async def get_version(_: int) -> None:
        async with bench.session.get(bench.url("/version")) as response:
            await _checked(response)

    return await bench.run(get_version, bench.args.floor_requests)


async def phase_creates(bench: Bench) -> PhaseResult:
    collection = bench.url(PODS.path(namespace=LOAD_NAMESPACE))

    async def create(index: int) -> None:
        body = orjson.dumps(pod_body(index, namespace=LOAD_NAMESPACE))
        headers = {"Content-Type": "application/json"}
        async with bench.session.post(collection, data=body, headers=headers) as response:
            await _checked(response)

    return await bench.run(create, bench.args.pods)


def _pod_url(bench: Bench, index: int) -> str:
    return bench.url(PODS.path(namespace=LOAD_NAMESPACE, name=f"keel-pod-{index:05d}"))


async def phase_patches(bench: Bench) -> PhaseResult:
    headers = {"Content-Type": "application/merge-patch+json"}

    async def patch(index: int) -> None:
        body = orjson.dumps({"metadata": {"annotations": {"bench.keelson.io/patched": "1"}}})
        async with bench.session.patch(
            _pod_url(bench, index), data=body, headers=headers
        ) as response:
            await _checked(response)

    return await bench.run(patch, min(bench.args.updates, bench.args.pods))


async def phase_puts(bench: Bench) -> PhaseResult:
    headers = {"Content-Type": "application/json"}

    async def read_then_put(index: int) -> None:
        url = _pod_url(bench, index)
        async with bench.session.get(url) as response:
            pod = orjson.loads(await _checked(response))
        pod["metadata"]["annotations"]["bench.keelson.io/replaced"] = "1"
        async with bench.session.put(url, data=orjson.dumps(pod), headers=headers) as response:
            await _checked(response)

    return await bench.run(read_then_put, min(bench.args.updates, bench.args.pods))


async def _timed_get(bench: Bench, path: str, params: dict[str, str]) -> tuple[float, bytes]:
    """Seconds until the whole body arrived, and the body (not decoded yet)."""
    started = time.perf_counter()
    async with bench.session.get(bench.url(path), params=params) as response:
        body = await _checked(response)
    return time.perf_counter() - started, body


async def phase_list(bench: Bench, params: dict[str, str], *, expected: int) -> PhaseResult:
    """Sequential lists; every answer must hold `expected` items.

    The rate and CPU shares are over the requests' own time: decoding the answer to check
    it happens between requests and is not part of any figure.
    """
    result = PhaseResult()
    path = PODS.path(namespace=LOAD_NAMESPACE)
    server_cpu = client_cpu = 0.0
    for _ in range(bench.args.lists):
        cpu_before, client_before = cpu_seconds(bench.server.pid), time.process_time()
        elapsed, body = await _timed_get(bench, path, params)
        server_cpu += cpu_seconds(bench.server.pid) - cpu_before
        client_cpu += time.process_time() - client_before
        answer = orjson.loads(body)
        if len(answer["items"]) != expected:
            raise RuntimeError(f"list {params} returned {len(answer['items'])}, not {expected}")
        result.latencies.append(elapsed)
        result.done += 1
    result.seconds = sum(result.latencies)
    result.server_cpu = server_cpu / result.seconds
    result.client_cpu = client_cpu / result.seconds
    return result


async def phase_paged_walk(bench: Bench, *, expected: int) -> tuple[PhaseResult, PhaseResult]:
    """Full walks with limit=500: (per-page latencies, whole-walk latencies).

    A walk's latency is the sum of its pages' latencies (decoding is not counted).
    """
    pages, walks = PhaseResult(), PhaseResult()
    path = PODS.path(namespace=LOAD_NAMESPACE)
    server_cpu = client_cpu = 0.0
    for _ in range(max(1, bench.args.lists // 4)):
        walk_seconds, items, token = 0.0, 0, ""
        while True:
            params = {"limit": "500", **({"continue": token} if token else {})}
            cpu_before, client_before = cpu_seconds(bench.server.pid), time.process_time()
            elapsed, body = await _timed_get(bench, path, params)
            server_cpu += cpu_seconds(bench.server.pid) - cpu_before
            client_cpu += time.process_time() - client_before
            answer = orjson.loads(body)
            pages.latencies.append(elapsed)
            walk_seconds += elapsed
            items += len(answer["items"])
            token = answer["metadata"].get("continue") or ""
            if not token:
                break
        if items != expected:
            raise RuntimeError(f"a paged walk returned {items} pods, not {expected}")
        walks.latencies.append(walk_seconds)
    walks.seconds = sum(walks.latencies)
    walks.server_cpu, walks.client_cpu = server_cpu / walks.seconds, client_cpu / walks.seconds
    pages.done, walks.done = len(pages.latencies), len(walks.latencies)
    pages.seconds, pages.server_cpu, pages.client_cpu = (
        walks.seconds,
        walks.server_cpu,
        walks.client_cpu,
    )
    return pages, walks


# ---------------------------------------------------------------- watch phase


def _watch_process(
    server: str,
    kubeconfig: str,
    resource_version: str,
    watchers: int,
    ready: multiprocessing.Queue,
    results: multiprocessing.Queue,
    time_limit: float,
) -> None:
    """Child process: open the watches, report ready, then send back every latency."""
    ssl_context = load_kubeconfig(Path(kubeconfig)).ssl_context()
    outcome = asyncio.run(
        _watch_all(server, ssl_context, resource_version, watchers, ready, time_limit)
    )
    results.put(outcome)


async def _watch_all(
    server: str,
    ssl_context: ssl.SSLContext,
    resource_version: str,
    watchers: int,
    ready: multiprocessing.Queue,
    time_limit: float,
) -> dict:
    warmed_up = 0
    all_warm = asyncio.Event()
    latencies: list[float] = []
    finished = 0
    url = server + PODS.path(namespace=WATCH_NAMESPACE)
    params = {"watch": "true", "resourceVersion": resource_version, "timeoutSeconds": "600"}

    async def watch_one(session: aiohttp.ClientSession) -> None:
        nonlocal warmed_up, finished
        async with session.get(url, params=params) as response:
            if response.status >= 300:
                await _checked(response)
            buffer = b""
            async for chunk in response.content.iter_any():
                received = time.time_ns()
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    metadata = orjson.loads(line)["object"]["metadata"]
                    name = metadata["name"]
                    sent = (metadata.get("annotations") or {}).get(SENT_ANNOTATION)
                    if sent is not None:
                        latencies.append((received - int(sent)) / 1e6)
                    elif name == WARMUP_POD:
                        warmed_up += 1
                        if warmed_up == watchers:
                            all_warm.set()
                    elif name == DONE_POD:
                        finished += 1
                        return

    connector = aiohttp.TCPConnector(ssl=ssl_context, limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=time_limit)
    cpu_before = 0.0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(watch_one(session)) for _ in range(watchers)]
        ready.put("opened")
        try:
            await asyncio.wait_for(all_warm.wait(), timeout=time_limit)
            cpu_before = time.process_time()
            ready.put("warm")
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=time_limit)
        except TimeoutError:
            for task in tasks:
                task.cancel()
    return {
        "latencies_ms": latencies,
        "finished": finished,
        "cpu_seconds": time.process_time() - cpu_before,
    }


async def phase_watch(bench: Bench) -> tuple[PhaseResult, dict]:
    """Watch latencies in ms (as PhaseResult.latencies) and the child's raw outcome."""
    args = bench.args
    await bench.create_namespace(WATCH_NAMESPACE)
    collection = bench.url(PODS.path(namespace=WATCH_NAMESPACE))
    async with bench.session.get(collection) as response:
        resource_version = orjson.loads(await _checked(response))["metadata"]["resourceVersion"]

    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    child = context.Process(
        target=_watch_process,
        args=(bench.server.server, str(bench.server.kubeconfig), resource_version,
              args.watchers, ready, results, args.phase_seconds),
    )  # fmt: skip
    child.start()
    try:
        await _receive(ready, "opened", timeout=args.phase_seconds)
        # One warm-up pod that every stream must deliver first: proves all of them are live.
        await _post_pod(bench, collection, pod_body(0, namespace=WATCH_NAMESPACE, name=WARMUP_POD))
        await _receive(ready, "warm", timeout=args.phase_seconds)
        result = await _steady_writes(bench, collection)
        await _post_pod(bench, collection, pod_body(0, namespace=WATCH_NAMESPACE, name=DONE_POD))
        outcome = await _receive(results, "results", timeout=args.phase_seconds)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()  # our own child, by its handle
            child.join()
    result.latencies = outcome["latencies_ms"]
    return result, outcome


async def _receive(source: multiprocessing.Queue, what: str, *, timeout: float) -> Any:
    """The watcher process's next message, without blocking the event loop."""
    try:
        return await asyncio.to_thread(source.get, timeout=timeout)
    except queue.Empty:
        raise RuntimeError(f"the watcher process sent no {what!r} within {timeout:g} s") from None


async def _post_pod(bench: Bench, collection: str, body: dict) -> None:
    async with bench.session.post(collection, json=body) as response:
        await _checked(response)


async def _steady_writes(bench: Bench, collection: str) -> PhaseResult:
    """`--changes` writes at `--rate`/s: first create WATCHED_PODS pods, then patch them."""
    args = bench.args
    result = PhaseResult()
    headers = {"Content-Type": "application/merge-patch+json"}
    cpu_before, started = cpu_seconds(bench.server.pid), time.perf_counter()
    for change in range(args.changes):
        pause = started + change / args.rate - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
        index = change % WATCHED_PODS
        name = f"keel-watched-{index:02d}"
        if change < WATCHED_PODS:
            body = pod_body(index, namespace=WATCH_NAMESPACE, name=name)
            body["metadata"]["annotations"][SENT_ANNOTATION] = str(time.time_ns())
            await _post_pod(bench, collection, body)
        else:
            patch = {"metadata": {"annotations": {SENT_ANNOTATION: str(time.time_ns())}}}
            async with bench.session.patch(
                f"{collection}/{name}", data=orjson.dumps(patch), headers=headers
            ) as response:
                await _checked(response)
        result.done += 1
    result.seconds = time.perf_counter() - started
    result.server_cpu = (cpu_seconds(bench.server.pid) - cpu_before) / result.seconds
    return result


# ---------------------------------------------------------------- report


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _load_line(name: str, result: PhaseResult) -> str:
    errors = f", {result.errors} errors ({result.first_error})" if result.errors else ""
    return (
        f"  {name:<26} {result.done} in {result.seconds:.1f} s = {result.rate:,.0f}/s, "
        f"latency p50 {_ms(percentile(result.latencies, 0.5))} "
        f"p99 {_ms(percentile(result.latencies, 0.99))}, "
        f"CPU server {result.server_cpu:.0%} client {result.client_cpu:.0%}{errors}"
    )


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("pass" if ok else "FAIL")


def print_table(rows: list[tuple[str, str, str, bool | None]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    header = ("figure", "measured", "target")
    widths = [max(width, len(title)) for width, title in zip(widths, header, strict=True)]
    print(f"{header[0]:<{widths[0]}}  {header[1]:>{widths[1]}}  {header[2]:<{widths[2]}}  result")
    for figure, measured, target, ok in rows:
        print(
            f"{figure:<{widths[0]}}  {measured:>{widths[1]}}  {target:<{widths[2]}}  {_verdict(ok)}"
        )


async def run_benchmark(args: argparse.Namespace, server: KeelsonProcess, *, machine: str) -> None:
    connector = aiohttp.TCPConnector(ssl=server.ssl_context(), limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        bench = Bench(server=server, session=session, args=args)
        await bench.create_namespace(LOAD_NAMESPACE)
        rss_idle = rss_bytes(server.pid)

        print(f"load ({args.writers} concurrent clients):", flush=True)
        floor = await phase_floor(bench)
        print(_load_line("GET /version (floor)", floor), flush=True)
        creates = await phase_creates(bench)
        print(_load_line("create pod", creates), flush=True)
        if creates.done != args.pods:
            raise RuntimeError(f"only {creates.done} of {args.pods} pods were created")
        patches = await phase_patches(bench)
        print(_load_line("merge PATCH pod", patches), flush=True)
        puts = await phase_puts(bench)
        print(_load_line("GET + PUT pod (per PUT)", puts), flush=True)

        await asyncio.sleep(args.gc_pause)
        rss_loaded = rss_bytes(server.pid)
        print(f"server RSS: idle {rss_idle / 2**20:.0f} MiB, "
              f"with {args.pods} pods {rss_loaded / 2**20:.0f} MiB", flush=True)  # fmt: skip

        print(f"LIST ({args.lists} sequential lists each):", flush=True)
        full = await phase_list(bench, {}, expected=args.pods)
        print(_load_line("full list", full), flush=True)
        selected = args.pods // APP_GROUPS + (1 if args.pods % APP_GROUPS > 7 else 0)
        labelled = await phase_list(bench, {"labelSelector": "app=bench-7"}, expected=selected)
        print(_load_line("labelSelector app=bench-7", labelled), flush=True)
        pages, walks = await phase_paged_walk(bench, expected=args.pods)
        print(_load_line("one limit=500 page", pages), flush=True)
        print(_load_line("full limit=500 walk", walks), flush=True)
        rss_after_lists = rss_bytes(server.pid)
        print(f"server RSS after the lists: {rss_after_lists / 2**20:.0f} MiB", flush=True)

        print(f"watch ({args.watchers} watchers, {args.changes} changes at {args.rate:g}/s):",
              flush=True)  # fmt: skip
        writes, outcome = await phase_watch(bench)
        expected_events = args.changes * args.watchers
        received = len(writes.latencies)
        print(
            f"  events received {received} of {expected_events}, "
            f"streams finished {outcome['finished']} of {args.watchers}, "
            f"writer {writes.rate:.0f}/s, CPU server {writes.server_cpu:.0%} "
            f"watchers {outcome['cpu_seconds'] / writes.seconds:.0%}",
            flush=True,
        )
        rss_end = rss_bytes(server.pid)
        print(f"server RSS at the end: {rss_end / 2**20:.0f} MiB", flush=True)

    watch_p50 = percentile(writes.latencies, 0.5)
    watch_p99 = percentile(writes.latencies, 0.99)
    all_delivered = received == expected_events
    mb = rss_loaded / 1e6
    print()
    print(f"machine (before the run): {machine}")
    print_table([
        ("GET /version floor (16 clients)", f"{floor.rate:,.0f} req/s", "(ceiling)", None),
        ("create pods (16 writers)", f"{creates.rate:,.0f} writes/s", ">= 1,000/s",
         creates.rate >= TARGET_WRITES_PER_SECOND),
        ("merge PATCH pods (16 writers)", f"{patches.rate:,.0f} writes/s", ">= 1,000/s",
         patches.rate >= TARGET_WRITES_PER_SECOND),
        ("GET+PUT pods (16 writers)", f"{puts.rate:,.0f} writes/s", ">= 1,000/s",
         puts.rate >= TARGET_WRITES_PER_SECOND),
        (f"watch latency p50 ({args.watchers} watchers)", f"{watch_p50:.1f} ms", "-", None),
        (f"watch latency p99 ({args.watchers} watchers)", f"{watch_p99:.1f} ms", "<= 50 ms",
         watch_p99 <= TARGET_WATCH_P99_MS and all_delivered),
        (f"LIST {args.pods} pods p50", _ms(percentile(full.latencies, 0.5)), "-", None),
        (f"LIST {args.pods} pods p99", _ms(percentile(full.latencies, 0.99)), "-", None),
        ("LIST labelSelector (1/50) p99", _ms(percentile(labelled.latencies, 0.99)), "-", None),
        ("LIST limit=500 page p99", _ms(percentile(pages.latencies, 0.99)), "-", None),
        ("LIST limit=500 full walk p50", _ms(percentile(walks.latencies, 0.5)), "-", None),
        (f"server RSS with {args.pods} pods", f"{mb:.0f} MB", "<= 150 MB", mb <= TARGET_RSS_MB),
        ("server RSS after the LIST phase", f"{rss_after_lists / 1e6:.0f} MB", "-", None),
    ])  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000, help="pods created (default 10000)")
    parser.add_argument(
        "--updates",
        type=int,
        default=5_000,
        help="pods updated by PATCH and again by GET+PUT (default 5000)",
    )
    parser.add_argument("--writers", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument(
        "--floor-requests",
        type=int,
        default=10_000,
        help="GET /version requests of the floor phase (10000)",
    )
    parser.add_argument("--lists", type=int, default=20, help="lists per LIST figure (20)")
    parser.add_argument("--watchers", type=int, default=100, help="watch streams (100)")
    parser.add_argument("--changes", type=int, default=500, help="watched writes (500)")
    parser.add_argument("--rate", type=float, default=50.0, help="watched writes per second (50)")
    parser.add_argument(
        "--gc-pause", type=float, default=5.0, help="seconds to wait before measuring RSS (5)"
    )
    parser.add_argument(
        "--phase-seconds", type=float, default=180.0, help="upper bound on any one phase (180)"
    )
    parser.add_argument(
        "--with-controllers",
        action="store_true",
        help="run the scheduler and controllers inside the apiserver too",
    )
    return parser.parse_args(argv)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extra_args = () if args.with_controllers else ("--disable-controllers",)
    machine = machine_summary()  # the load average before our own load starts
    with start_apiserver(extra_args=extra_args) as server:
        print(f"keelson apiserver pid {server.pid} on {server.server}", flush=True)
        try:
            asyncio.run(run_benchmark(args, server, machine=machine))
        except (RuntimeError, RequestFailed) as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
