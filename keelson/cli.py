"""The ``keelson`` command: flag parsing and process lifecycle only (INTERFACE.md).

Each subcommand turns flags into the options dataclass of its package and runs it until
SIGTERM/SIGINT. Failures a user can fix (bad flags, unreadable kubeconfig, dockerd not
running, a port in use) are one line on stderr with exit code 2 (usage) or 1 (runtime),
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class UsageError(Exception):
    """Raised by a command for a flag value that cannot work (exit code 2)."""


def keelson_version() -> str:
    # Imported here: importlib.metadata costs ~2.7 MB resident, and only `version` needs it.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keelson")
    except PackageNotFoundError:
        return "0.0.0+unknown"


def _default_node_name() -> str:
    return socket.gethostname().lower()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="keelson", description="A small Kubernetes-style cluster.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    api = commands.add_parser("apiserver", help="run the Kubernetes-API server")
    api.add_argument("--data-dir", type=Path, required=True)
    api.add_argument("--secure-port", type=int, default=6443)
    api.add_argument("--bind-address", default="0.0.0.0")
    api.add_argument("--storage", default="", help="sqlite:///DIR/state.db (default) or "
                     "etcd://HOST:PORT[,HOST:PORT]")
    api.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    api.add_argument("--service-node-port-range", default="30000-32767")
    api.add_argument("--disable-controllers", action="store_true",
                     help="do not run the scheduler and controllers in this process")
    _add_controller_flags(api)
    api.add_argument("--token-auth-file", type=Path, default=None,
                     help="CSV of token,user,uid,\"group1,group2\" for bearer tokens")
    _add_security_flags(api)

    agent = commands.add_parser("agent", help="run the node agent (kubelet loop + proxy)")
    agent.add_argument("--kubeconfig", type=Path, required=True)
    agent.add_argument("--node-name", default=None)
    agent.add_argument("--data-dir", type=Path, default=Path("/var/lib/keelson/agent"))
    agent.add_argument("--proxy-mode", choices=("iptables", "nftables", "none"),
                       default="iptables")
    agent.add_argument("--kubelet-port", type=int, default=10250)
    agent.add_argument("--metrics-bind-address", default="127.0.0.1:10249")
    agent.add_argument("--healthz-bind-address", default="0.0.0.0:10256")
    agent.add_argument("--pod-infra-image", default="localhost/keelson/pause:1")
    agent.add_argument("--pod-cidr", default=None)
    agent.add_argument("--max-pods", type=int, default=110)
    agent.add_argument("--cluster-cidr", default="10.244.0.0/16",
                       help="the cluster's pod network (for the proxy's masquerade rules)")

    proxy = commands.add_parser("proxy", help="run the service proxy alone")
    proxy.add_argument("--kubeconfig", type=Path, default=None)
    proxy.add_argument("--mode", choices=("iptables", "nftables"), default="iptables")
    proxy.add_argument("--cleanup", action="store_true",
                       help="remove every rule, chain and interface the proxy made, then exit")
    proxy.add_argument("--node-name", default=None)
    proxy.add_argument("--metrics-bind-address", default="127.0.0.1:10249")
    proxy.add_argument("--healthz-bind-address", default="0.0.0.0:10256")
    proxy.add_argument("--cluster-cidr", default="10.244.0.0/16")
    proxy.add_argument("--service-cidr", default="10.96.0.0/12")
    proxy.add_argument("--min-sync-period", type=float, default=1.0,
                       help="seconds between two rule syncs at least")
    proxy.add_argument("--sync-period", type=float, default=30.0,
                       help="full resync at least this often (seconds)")
    proxy.add_argument("--nodeport-localhost", action="store_true",
                       help="also serve NodePorts on 127.0.0.1 (sets route_localnet)")
    proxy.add_argument("--iptables-backend", choices=("legacy", "nft"), default=None,
                       help="default: the one the host already uses, like kube-proxy")

    sched = commands.add_parser("scheduler", help="run the scheduler alone")
    sched.add_argument("--kubeconfig", type=Path, required=True)

    manager = commands.add_parser("controller-manager", help="run the controllers alone")
    manager.add_argument("--kubeconfig", type=Path, required=True)
    _add_controller_flags(manager)

    up = commands.add_parser("up", help="apiserver + agent in one foreground process")
    up.add_argument("--data-dir", type=Path, default=Path("/var/lib/keelson"))
    up.add_argument("--secure-port", type=int, default=6443)

    commands.add_parser("version", help="print the version")
    return parser


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _add_security_flags(parser: argparse.ArgumentParser) -> None:
    """kube-apiserver's flags for encryption at rest, ServiceAccount tokens, admission."""
    parser.add_argument("--encryption-provider-config", type=Path, default=None,
                        metavar="FILE", help="EncryptionConfiguration (apiserver.config.k8s.io/"
                        "v1) naming the resources to encrypt at rest and their providers "
                        "(aesgcm, aescbc, secretbox, identity)")
    parser.add_argument("--service-account-signing-key-file", type=Path, default=None,
                        metavar="FILE", help="RSA private key (PEM) that signs ServiceAccount "
                        "tokens (default DATA_DIR/pki/sa.key, created at first start)")
    parser.add_argument("--service-account-key-file", type=Path, action="append", default=[],
                        metavar="FILE", help="more PEM keys or certificates that verify "
                        "ServiceAccount tokens, e.g. a previous signing key (repeatable)")
    parser.add_argument("--service-account-issuer", action="append", default=None,
                        metavar="URL", help="issuer (iss) of ServiceAccount tokens; the first "
                        "signs, all are accepted (repeatable; default "
                        "https://kubernetes.default.svc.cluster.local)")
    parser.add_argument("--api-audiences", type=_comma_list, default=[], metavar="LIST",
                        help="audiences a token sent to this server must have, comma-separated "
                        "(default: the issuers)")
    parser.add_argument("--service-account-jwks-uri", default="", metavar="URL",
                        help="jwks_uri in /.well-known/openid-configuration (default "
                        "https://ADDRESS:PORT/openid/v1/jwks)")
    parser.add_argument("--disable-admission-plugins", type=_comma_list, default=[],
                        metavar="LIST", help="admission plugins to turn off, comma-separated "
                        "(known: ServiceAccount)")


def _add_controller_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster-cidr", default="10.244.0.0/16",
                        help="the pod network node IPAM divides into node podCIDRs")
    parser.add_argument("--node-monitor-grace-period", type=float, default=40.0,
                        metavar="SECONDS", help="a node silent this long is marked NotReady "
                        "(Unknown) and tainted unreachable")


def _controller_options(args: argparse.Namespace) -> Any:
    from controllers import ControllerManagerOptions

    try:
        return ControllerManagerOptions(
            cluster_cidr=args.cluster_cidr,
            node_monitor_grace_period=args.node_monitor_grace_period)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` with SIGTERM/SIGINT setting ``stop`` for a clean shutdown."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


def _cmd_apiserver(args: argparse.Namespace) -> None:
    from apiserver.app import DEFAULT_SERVICE_ACCOUNT_ISSUER, APIServerOptions
    from keelson.controlplane import run_control_plane

    controllers = None if args.disable_controllers else _controller_options(args)
    options = APIServerOptions(
        data_dir=args.data_dir, secure_port=args.secure_port, bind_address=args.bind_address,
        storage=args.storage, service_cluster_ip_range=args.service_cluster_ip_range,
        service_node_port_range=args.service_node_port_range,
        token_auth_file=args.token_auth_file,
        encryption_provider_config=args.encryption_provider_config,
        service_account_signing_key_file=args.service_account_signing_key_file,
        service_account_key_files=args.service_account_key_file,
        service_account_issuers=args.service_account_issuer or [DEFAULT_SERVICE_ACCOUNT_ISSUER],
        api_audiences=args.api_audiences,
        service_account_jwks_uri=args.service_account_jwks_uri,
        disable_admission_plugins=args.disable_admission_plugins)
    _run(lambda stop: run_control_plane(options, controllers, stop=stop))


def _cmd_scheduler(args: argparse.Namespace) -> None:
    import scheduler

    _check_kubeconfig(args.kubeconfig)
    _run(lambda stop: _until(stop, asyncio.create_task(scheduler.run(args.kubeconfig))))


def _cmd_controller_manager(args: argparse.Namespace) -> None:
    import controllers

    options = _controller_options(args)
    _check_kubeconfig(args.kubeconfig)
    _run(lambda stop: _until(stop, asyncio.create_task(
        controllers.run(args.kubeconfig, options))))


def _check_kubeconfig(kubeconfig: Path) -> Any:
    """The kubeconfig's cluster config; one line at start when it cannot be used."""
    from apiclient.kubeconfig import KubeconfigError, load_kubeconfig

    try:
        return load_kubeconfig(kubeconfig)
    except (KubeconfigError, OSError) as exc:
        raise RuntimeError(f"cannot use kubeconfig {kubeconfig}: {exc}") from None


def _proxy_options(args: argparse.Namespace) -> Any:
    from proxy import ProxyOptions

    try:
        return ProxyOptions(
            mode=args.mode, cluster_cidr=args.cluster_cidr, service_cidr=args.service_cidr,
            node_name=(args.node_name or _default_node_name()),
            min_sync_period=args.min_sync_period, sync_period=args.sync_period,
            healthz_bind_address=args.healthz_bind_address,
            metrics_bind_address=args.metrics_bind_address,
            nodeport_localhost=args.nodeport_localhost, iptables_backend=args.iptables_backend)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _cmd_proxy(args: argparse.Namespace) -> None:
    from proxy import cleanup, run_proxy

    options = _proxy_options(args)
    if args.cleanup:
        cleanup(options)
        return
    if args.kubeconfig is None:
        raise UsageError("--kubeconfig is required (except with --cleanup)")
    client = _client(args.kubeconfig)

    async def main(stop: asyncio.Event) -> None:
        task = asyncio.create_task(run_proxy(options, client))
        try:
            await _until(stop, task)
        finally:
            await client.close()

    _run(main)


def _client(kubeconfig: Path) -> Any:
    from apiclient.client import ApiClient

    return ApiClient(_check_kubeconfig(kubeconfig))


async def _until(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Run ``task`` until ``stop`` is set (then cancel it) or it ends by itself."""
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopper):
        pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if task in done and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


def _agent_options(args: argparse.Namespace, *, kubeconfig: Path, data_dir: Path) -> Any:
    from nodeagent.agent import AgentOptions

    return AgentOptions(
        kubeconfig=str(kubeconfig), node_name=args.node_name or "", data_dir=str(data_dir),
        proxy_mode=args.proxy_mode, kubelet_port=args.kubelet_port,
        metrics_bind_address=args.metrics_bind_address,
        healthz_bind_address=args.healthz_bind_address,
        pod_infra_image=args.pod_infra_image, pod_cidr=args.pod_cidr, max_pods=args.max_pods)


def _node_daemon(args: argparse.Namespace, client: Any, *, kubeconfig: Path, data_dir: Path
                 ) -> list[Awaitable[None]]:
    """The kubelet loop and (unless --proxy-mode none) the service proxy, sharing one API
    client and one metrics registry, so /metrics serves kubelet_* and kubeproxy_*."""
    from prometheus_client import CollectorRegistry

    from nodeagent.agent import run_agent
    from proxy import ProxyOptions, run_proxy

    registry = CollectorRegistry()
    options = _agent_options(args, kubeconfig=kubeconfig, data_dir=data_dir)
    loops: list[Awaitable[None]] = [run_agent(options, client, registry=registry)]
    if args.proxy_mode != "none":
        try:
            proxy_options = ProxyOptions(
                mode=args.proxy_mode, cluster_cidr=args.cluster_cidr,
                node_name=options.resolved_node_name,
                healthz_bind_address=args.healthz_bind_address, metrics_bind_address="")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        loops.append(run_proxy(proxy_options, client, registry=registry))
    return loops


def _cmd_agent(args: argparse.Namespace) -> None:
    client = _client(args.kubeconfig)
    loops = _node_daemon(args, client, kubeconfig=args.kubeconfig, data_dir=args.data_dir)

    async def main(stop: asyncio.Event) -> None:
        try:
            await _until(stop, asyncio.create_task(_all(loops)))
        finally:
            await client.close()

    _run(main)


async def _all(loops: list[Awaitable[None]]) -> None:
    """Run loops together; the first failure cancels the others and is raised."""
    tasks = [asyncio.ensure_future(loop) for loop in loops]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _cmd_up(args: argparse.Namespace) -> None:
    from apiclient.client import ApiClient
    from apiserver.app import APIServerOptions, write_node_kubeconfig
    from controllers import ControllerManagerOptions
    from keelson.controlplane import control_plane

    node_name = _default_node_name()
    agent_args = build_parser().parse_args(["agent", "--kubeconfig", "unused"])
    agent_args.node_name = node_name

    async def main(stop: asyncio.Event) -> None:
        options = APIServerOptions(data_dir=args.data_dir, secure_port=args.secure_port)
        print(f"[up] starting the apiserver on :{args.secure_port} (data: {args.data_dir})",
              flush=True)
        async with control_plane(options, ControllerManagerOptions()) as server:
            print("[up] apiserver ready; scheduler and controllers running", flush=True)
            kubeconfig = write_node_kubeconfig(server, node_name)
            client = ApiClient.from_kubeconfig(kubeconfig)
            try:
                loops = _node_daemon(agent_args, client, kubeconfig=kubeconfig,
                                     data_dir=args.data_dir / "agent")
                daemon = asyncio.create_task(_all(loops))
                print(f"[up] node agent and service proxy starting for node {node_name}",
                      flush=True)
                print(f"[up] ready. export KUBECONFIG={server.kubeconfig}; "
                      f"kubectl get nodes,pods -A", flush=True)
                await _until(stop, daemon)
            finally:
                await client.close()
        print("[up] stopped (pods keep running; the next `keelson up` adopts them)", flush=True)

    _run(main)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "version":
        print(f"keelson {keelson_version()}")
        return
    try:
        if args.command == "apiserver":
            _cmd_apiserver(args)
        elif args.command == "proxy":
            _cmd_proxy(args)
        elif args.command == "agent":
            _cmd_agent(args)
        elif args.command == "scheduler":
            _cmd_scheduler(args)
        elif args.command == "controller-manager":
            _cmd_controller_manager(args)
        else:
            _cmd_up(args)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # one line for the user; details are in the log above
        from apiserver.app import ConfigError

        code = 2 if isinstance(exc, ConfigError | UsageError) else 1
        message = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.errno == 98:
            message = f"address already in use: {exc}"
        print(f"keelson {args.command}: error: {message}", file=sys.stderr)
        sys.exit(code)


if __name__ == "__main__":
    main()
