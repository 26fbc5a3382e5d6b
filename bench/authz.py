"""Authorization cost: GET and PUT throughput as a namespace-RBAC user vs system:masters.

Run from the repo root:  .venv/bin/python -m bench.authz   (about one minute)

It starts its own `keelson apiserver` on a free 127.0.0.1 port in a temporary directory
(controllers disabled), with a `--token-auth-file` holding two bearer tokens: one for a
user in `system:masters` (the privileged-group short cut: no rule is evaluated) and one
for `bench-user`, who holds only a RoleBinding in the benchmark namespace. Before
measuring, `--roles` Roles and `--roles` RoleBindings (other users', 1,000 by default)
are spread over 50 namespaces, the benchmark namespace included, so RBAC decides with a
realistic policy in place. Both users then drive the same load: `--clients` concurrent
keep-alive HTTPS connections doing GET of one of 100 ConfigMaps, then PUT of it with a
changed value (every PUT is a real write), `--seconds` per phase. The phases alternate
between the two users (who goes first alternates too) for `--rounds` rounds and the median
of each is printed, with the server CPU time per request (the cleaner figure: client and
server share the machine).

Target: the RBAC user is at most 10 % slower than system:masters. It ends the server by
PID at the end, also on failure; nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from ._util import KeelsonProcess, cpu_seconds, machine_summary, start_apiserver

NAMESPACE = "keel-bench-authz"
POLICY_NAMESPACES = 50
CONFIGMAPS = 100
ADMIN_TOKEN = "keel-bench-admin-token"
USER_TOKEN = "keel-bench-user-token"
USER = "bench-user"
TARGET_RATIO = 0.90  # the RBAC user's throughput / system:masters', at least
RBAC = "/apis/rbac.authorization.k8s.io/v1"


class RequestFailed(RuntimeError):
    """The server answered a benchmark request with an unexpected status."""


@dataclass
class Figures:
    requests: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_request_us(self) -> float:
        return self.cpu / self.requests * 1e6 if self.requests else 0.0


async def _check(response: aiohttp.ClientResponse, *expected: int) -> bytes:
    body = await response.read()
    if response.status not in expected:
        raise RequestFailed(f"{response.method} {response.url.path}: {response.status} "
                            f"{body[:300]!r}")
    return body


class Client:
    def __init__(self, session: aiohttp.ClientSession, server: str, token: str) -> None:
        self.session = session
        self.server = server
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def post(self, path: str, body: dict, *expected: int) -> None:
        async with self.session.post(self.server + path, data=orjson.dumps(body),
                                     headers=self.headers) as response:
            await _check(response, *(expected or (201,)))

    async def get(self, path: str) -> bytes:
        async with self.session.get(self.server + path, headers=self.headers) as response:
            return await _check(response, 200)

    async def put(self, path: str, body: dict) -> None:
        async with self.session.put(self.server + path, data=orjson.dumps(body),
                                    headers=self.headers) as response:
            await _check(response, 200)


async def _in_batches(calls: list[Callable[[], Awaitable[None]]], width: int = 32) -> None:
    for start in range(0, len(calls), width):
        await asyncio.gather(*(call() for call in calls[start:start + width]))


async def set_up(admin: Client, roles: int) -> None:
    """The policy in place and the objects the load reads and writes."""
    namespaces = [NAMESPACE, *(f"keel-bench-ns-{i:02d}" for i in range(POLICY_NAMESPACES - 1))]
    await _in_batches([lambda ns=ns: admin.post("/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for ns in namespaces])
    rule = {"apiGroups": [""], "resources": ["configmaps", "secrets", "pods"],
            "verbs": ["get", "list", "watch", "update"]}
    calls: list[Callable[[], Awaitable[None]]] = []
    for index in range(roles):
        ns = namespaces[index % len(namespaces)]
        role = f"keel-role-{index:04d}"
        calls.append(lambda ns=ns, role=role: admin.post(
            f"{RBAC}/namespaces/{ns}/roles",
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": role}, "rules": [rule]}))
        calls.append(lambda ns=ns, role=role, index=index: admin.post(
            f"{RBAC}/namespaces/{ns}/rolebindings",
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": f"{role}-binding"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
             "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                           "name": f"someone-{index:04d}"},
                          {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
                           "name": f"team-{index % 20}"}]}))
    await _in_batches(calls)
    await admin.post(f"{RBAC}/namespaces/{NAMESPACE}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "bench-user"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "keel-role-0000"},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": USER}]})
    await _in_batches([lambda i=i: admin.post(f"/api/v1/namespaces/{NAMESPACE}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"keel-cm-{i:03d}"},
        "data": {"value": "0", "payload": "x" * 512}}) for i in range(CONFIGMAPS)])


def _path(index: int) -> str:
    return f"/api/v1/namespaces/{NAMESPACE}/configmaps/keel-cm-{index % CONFIGMAPS:03d}"


async def drive(client: Client, *, clients: int, seconds: float, pid: int,
                operation: str) -> Figures:
    """``clients`` loops doing ``operation`` for ``seconds``; completed requests counted."""
    done = 0
    deadline = time.monotonic() + seconds

    async def loop(worker: int) -> None:
        nonlocal done
        index = worker
        while time.monotonic() < deadline:
            if operation == "GET":
                await client.get(_path(index))
            else:
                await client.put(_path(index), {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": f"keel-cm-{index % CONFIGMAPS:03d}",
                                 "namespace": NAMESPACE},
                    "data": {"value": f"{worker}-{done}", "payload": "x" * 512}})
            done += 1
            index += clients

    cpu_before, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(loop(worker) for worker in range(clients)))
    return Figures(done, time.perf_counter() - started, cpu_seconds(pid) - cpu_before)


def _median(results: list[Figures]) -> Figures:
    rates = sorted(results, key=lambda f: f.rate)
    middle = rates[len(rates) // 2]
    cpu = statistics.median(f.cpu_per_request_us for f in results)
    return Figures(middle.requests, middle.seconds, cpu * middle.requests / 1e6)


async def run_benchmark(args: argparse.Namespace, server: KeelsonProcess) -> bool:
    # The cluster CA only: a client certificate would authenticate first (as the admin).
    context = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.crt"))
    connector = aiohttp.TCPConnector(ssl=context, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        admin = Client(session, server.server, ADMIN_TOKEN)
        user = Client(session, server.server, USER_TOKEN)
        started = time.perf_counter()
        await set_up(admin, args.roles)
        print(f"policy in place: {args.roles} Roles + {args.roles} RoleBindings over "
              f"{POLICY_NAMESPACES} namespaces ({time.perf_counter() - started:.1f}s)",
              flush=True)
        await drive(user, clients=args.clients, seconds=1.0, pid=server.pid, operation="GET")
        results: dict[tuple[str, str], list[Figures]] = {}
        identities = [("system:masters", admin), ("namespace RBAC", user)]
        for round_number in range(args.rounds):
            for operation in ("GET", "PUT"):
                # Alternate who goes first, so that drift (WAL growth, warm-up) is shared.
                for who, client in identities[::1 if round_number % 2 == 0 else -1]:
                    figures = await drive(client, clients=args.clients, seconds=args.seconds,
                                          pid=server.pid, operation=operation)
                    results.setdefault((operation, who), []).append(figures)
    ok = True
    print(f"\n{'operation':<10}{'identity':<17}{'req/s':>9}{'server CPU/req':>17}"
          f"{'vs masters':>12}")
    for operation in ("GET", "PUT"):
        masters = _median(results[(operation, "system:masters")])
        for who in ("system:masters", "namespace RBAC"):
            figures = _median(results[(operation, who)])
            ratio = figures.rate / masters.rate if masters.rate else 0.0
            print(f"{operation:<10}{who:<17}{figures.rate:>9.0f}"
                  f"{figures.cpu_per_request_us:>14.0f} us{ratio:>11.1%}")
            ok = ok and ratio >= TARGET_RATIO
    print(f"\ntarget: the namespace-RBAC user at >= {TARGET_RATIO:.0%} of system:masters' "
          f"throughput: {'met' if ok else 'NOT met'}")
    return ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", type=int, default=1000,
                        help="Roles and RoleBindings of other users in place (default 1000)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one phase")
    parser.add_argument("--rounds", type=int, default=3, help="phases per user and operation")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(machine_summary(), flush=True)
    token_dir = Path(tempfile.mkdtemp(prefix="keelbench-tokens-"))
    try:
        tokens = token_dir / "tokens.csv"
        tokens.write_text(f'{ADMIN_TOKEN},bench-admin,uid-admin,"system:masters"\n'
                          f"{USER_TOKEN},{USER},uid-user\n")
        with start_apiserver(extra_args=("--disable-controllers", "--token-auth-file",
                                          str(tokens))) as server:
            print(f"keelson apiserver pid {server.pid} on {server.server}", flush=True)
            try:
                asyncio.run(run_benchmark(args, server))
            except RequestFailed as error:
                print(f"benchmark failed: {error}", file=sys.stderr)
                return 1
    finally:
        shutil.rmtree(token_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
