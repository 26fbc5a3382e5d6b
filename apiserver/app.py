"""The apiserver process: storage, watch cache, REST store, HTTP app, bootstrap objects.

This module only wires parts together (the composition root of ``keelson apiserver``);
behaviour lives in the parts. Start-up order matters and is kept here in one place:
PKI and kubeconfig -> storage -> watch cache (initial list) -> bootstrap namespaces and
the ``kubernetes`` Service -> HTTPS listener -> controllers. ``/readyz`` is 200 only
once all of that has happened.

Two tuning knobs have no flag and are read from the environment, so end-to-end tests
can see rare behaviour without waiting for it: ``KEELSON_WATCH_CACHE_WINDOW`` (events
kept per resource for resuming watches; older resourceVersions get 410 Gone) and
``KEELSON_WATCH_BOOKMARK_SECONDS`` (interval of watch BOOKMARK events, 30 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
from aiohttp import web

from apiclient.labels import (
    LAST_CHANGE_TRIGGER_TIME_ANNOTATION,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    SKIP_MIRROR_LABEL,
)
from apiclient.meta import utc_now
from apiclient.serving import metrics_handler
from apiserver import patch as patching
from apiserver import status
from apiserver.admission import node_restriction_plugin
from apiserver.admission import serviceaccount as sa_admission
from apiserver.admission.allocators import ClusterIPAllocator, NodePortAllocator
from apiserver.auth import bootstrap_policy, bootstrap_reconciler
from apiserver.auth import pki as pki_mod
from apiserver.auth import serviceaccount as sa_tokens
from apiserver.auth.authn import Authenticator, auth_middleware
from apiserver.auth.authorization import Authorization
from apiserver.auth.filters import (
    authorization_middleware,
    cache_catch_up,
    impersonation_middleware,
)
from apiserver.auth.tokens import ServiceAccountTokenAuthenticator
from apiserver.handlers import request as req
from apiserver.handlers import reviews
from apiserver.handlers import tokens as token_handlers
from apiserver.handlers.discovery import DiscoveryHandler
from apiserver.handlers.resources import BOOKMARK_INTERVAL, ResourceHandler
from apiserver.handlers.subresources import KubeletClient
from apiserver.metrics import APIServerMetrics
from apiserver.registry import Registry, ResourceType
from apiserver.rest import CreateAdmission, RestStore, WriteAdmission
from apiserver.storage.encryption import IDENTITY, EncryptionConfigError, load_encryption_config
from apiserver.storage.interface import Storage
from apiserver.storage.sqlite import SQLiteStorage
from apiserver.storage.transforming import TransformingStorage
from apiserver.storage.watchcache import WatchCache

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})
WATCH_CACHE_WINDOW = 10000  # events kept per resource for watches resuming from a revision
DEFAULT_SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# On by default, as in kube-apiserver.
ADMISSION_PLUGINS = (sa_admission.PLUGIN_NAME, node_restriction_plugin.PLUGIN_NAME)


class ConfigError(Exception):
    """A flag value that cannot work; reported as one line, exit code 2."""


@dataclass
class APIServerOptions:
    data_dir: Path
    secure_port: int = 6443
    bind_address: str = "0.0.0.0"
    storage: str = ""  # default sqlite:///DATA_DIR/state.db
    service_cluster_ip_range: str = "10.96.0.0/12"
    service_node_port_range: str = "30000-32767"
    token_auth_file: Path | None = None
    extra_sans: list[str] = field(default_factory=list)
    # Encryption at rest: kube's EncryptionConfiguration file (None: plaintext).
    encryption_provider_config: Path | None = None
    # ServiceAccount tokens: the RSA key that signs them (default DATA_DIR/pki/sa.key,
    # created at first start), more keys that verify them, issuer(s) and audiences.
    service_account_signing_key_file: Path | None = None
    service_account_key_files: list[Path] = field(default_factory=list)
    service_account_issuers: list[str] = field(
        default_factory=lambda: [DEFAULT_SERVICE_ACCOUNT_ISSUER])
    api_audiences: list[str] = field(default_factory=list)  # default: the issuers
    service_account_jwks_uri: str = ""
    disable_admission_plugins: list[str] = field(default_factory=list)
    watch_cache_window: int = field(
        default_factory=lambda: int(os.environ.get("KEELSON_WATCH_CACHE_WINDOW",
                                               WATCH_CACHE_WINDOW)))
    bookmark_interval: float = field(
        default_factory=lambda: float(os.environ.get("KEELSON_WATCH_BOOKMARK_SECONDS",
                                                     BOOKMARK_INTERVAL)))

    def validate(self) -> None:
        try:
            ipaddress.ip_network(self.service_cluster_ip_range, strict=True)
        except ValueError as exc:
            raise ConfigError(f"invalid --service-cluster-ip-range "
                              f"{self.service_cluster_ip_range!r}: {exc}") from None
        if self.watch_cache_window < 1 or self.bookmark_interval <= 0:
            raise ConfigError("KEELSON_WATCH_CACHE_WINDOW and KEELSON_WATCH_BOOKMARK_SECONDS "
                              "must be positive")
        if not 0 < self.secure_port < 65536:
            raise ConfigError(f"invalid --secure-port {self.secure_port}: must be 1-65535")
        unknown = sorted(set(self.disable_admission_plugins) - set(ADMISSION_PLUGINS))
        if unknown:
            raise ConfigError(f"unknown admission plugin(s) in --disable-admission-plugins: "
                              f"{', '.join(unknown)} (known: {', '.join(ADMISSION_PLUGINS)})")
        if not [issuer for issuer in self.service_account_issuers if issuer]:
            raise ConfigError("--service-account-issuer must not be empty")


def open_storage(url: str, data_dir: Path) -> Storage:
    if not url:
        url = f"sqlite:///{data_dir / 'state.db'}"
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = Path(parsed.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStorage(path)
    if parsed.scheme == "etcd":
        raise ConfigError("the etcd storage backend is not available yet; use sqlite:///PATH")
    raise ConfigError(f"unsupported --storage {url!r}: use sqlite:///PATH or etcd://HOST:PORT")


def encrypted_storage(storage: Storage, config_file: Path, registry: Registry) -> Storage:
    """``storage`` with the resources the EncryptionConfiguration names encrypted at rest."""
    try:
        config = load_encryption_config(config_file)
    except EncryptionConfigError as exc:
        raise ConfigError(str(exc)) from None
    transformers = {}
    for rt in registry.resources:
        transformer = config.for_resource(rt.plural, rt.group)
        if transformer is not IDENTITY:
            transformers[rt.prefix] = transformer
    return TransformingStorage(storage, transformers) if transformers else storage


def token_authority(options: APIServerOptions) -> sa_tokens.TokenAuthority:
    """The ServiceAccount token signer/verifier from the flags (a bad key: ConfigError)."""
    key_file = options.service_account_signing_key_file or \
        options.data_dir / "pki" / "sa.key"
    try:
        signing_key = sa_tokens.load_or_create_signing_key(key_file)
        verification = [key for path in options.service_account_key_files
                        for key in sa_tokens.load_verification_keys(path)]
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot use the service-account key: {exc}") from None
    issuers = [issuer for issuer in options.service_account_issuers if issuer]
    return sa_tokens.TokenAuthority(signing_key, issuers,
                                    api_audiences=options.api_audiences or issuers,
                                    verification_keys=verification)


def make_patcher() -> Any:
    def apply(rt: ResourceType, old: Obj, patch_type: str, body: Any) -> Obj:
        try:
            if patch_type == "json":
                return patching.apply_json_patch(old, body)
            if patch_type == "merge":
                return patching.apply_merge_patch(old, body)
            return patching.apply_strategic_merge_patch(
                old, body, api_version=rt.group_version, kind=rt.kind)
        except patching.PatchError as exc:
            raise status.StatusError(422, "Invalid", f"the patch could not be applied: {exc}"
                                     ) from None
    return apply


def _index_fields(registry: Registry) -> Any:
    by_prefix = {rt.prefix: rt for rt in registry.resources}

    def index(prefix: str, obj: Obj) -> dict[str, str]:
        return by_prefix[prefix].selectable_fields(obj)

    return index


@web.middleware
async def status_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure leaves as a Kubernetes Status; nothing else escapes."""
    try:
        return await handler(request)
    except status.StatusError as exc:
        return req.json_response(exc.to_status(), code=exc.code)
    except web.HTTPException as exc:
        if exc.status == 404:
            error = status.StatusError(404, "NotFound",
                                       "the server could not find the requested resource")
        elif exc.status == 405:
            error = status.method_not_allowed(request.method)
        else:
            error = status.StatusError(exc.status, exc.reason, exc.text or exc.reason)
        return req.json_response(error.to_status(), code=error.code)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the server keeps serving; the client gets a 500 Status
        log.exception("internal error serving %s %s", request.method, request.path)
        return req.json_response(status.internal(str(exc)).to_status(), code=500)


class APIServer:
    def __init__(self, options: APIServerOptions) -> None:
        options.validate()
        self.options = options
        self.registry = Registry()
        self.metrics = APIServerMetrics()
        self.storage = open_storage(options.storage, options.data_dir)
        if options.encryption_provider_config is not None:
            self.storage = encrypted_storage(self.storage, options.encryption_provider_config,
                                             self.registry)
        try:
            self.service_ips = ClusterIPAllocator(self.storage, options.service_cluster_ip_range)
            self.node_ports = NodePortAllocator(self.storage, options.service_node_port_range)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.cache = WatchCache(self.storage, prefixes=[r.prefix for r in self.registry.resources],
                                index_fields=_index_fields(self.registry),
                                window=options.watch_cache_window)
        admission: list[CreateAdmission] = []
        if sa_admission.PLUGIN_NAME not in options.disable_admission_plugins:
            admission.append(sa_admission.ServiceAccountAdmission())
        validating: list[WriteAdmission] = []
        if node_restriction_plugin.PLUGIN_NAME not in options.disable_admission_plugins:
            validating.append(node_restriction_plugin.NodeRestriction())
        self.store = RestStore(self.storage, self.registry, service_ips=self.service_ips,
                               node_ports=self.node_ports, patcher=make_patcher(),
                               cache=self.cache, admission=admission, validating=validating)
        self.authorization = Authorization()
        self.tokens: sa_tokens.TokenAuthority | None = None
        self._external_address = f"127.0.0.1:{options.secure_port}"  # set by start()
        self.kubelet: KubeletClient | None = None
        self.ready = False
        self.kubeconfig: Path | None = None
        self.pki: pki_mod.PKI | None = None
        self._runner: web.AppRunner | None = None
        self._background: list[asyncio.Task[None]] = []

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        opts = self.options
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        addresses = pki_mod.node_addresses()
        first_service_ip = str(next(ipaddress.ip_network(opts.service_cluster_ip_range).hosts()))
        self.pki = pki = await asyncio.to_thread(
            pki_mod.ensure_pki, opts.data_dir,
            hostnames=[socket.gethostname().lower(), *opts.extra_sans],
            ips=[*addresses, first_service_ip])
        self.kubeconfig = await asyncio.to_thread(pki_mod.ensure_admin_kubeconfig, opts.data_dir,
                                                  pki, port=opts.secure_port)
        kubelet_cert = opts.data_dir / "pki" / "apiserver-kubelet-client.crt"
        kubelet_key = opts.data_dir / "pki" / "apiserver-kubelet-client.key"
        if not kubelet_cert.exists():
            cert, key = pki_mod.issue_client_cert(pki, common_name="kube-apiserver-kubelet-client",
                                                  groups=["system:masters"])
            kubelet_key.write_bytes(key)
            kubelet_key.chmod(0o600)
            kubelet_cert.write_bytes(cert)
        self.kubelet = KubeletClient(cert_file=str(kubelet_cert), key_file=str(kubelet_key))
        self.tokens = await asyncio.to_thread(token_authority, opts)

        await self.storage.open()
        await self.cache.start()
        await self.cache.wait_until_ready()
        self.authorization.feed(self.cache)
        self.metrics.watch_storage(self._object_counts)
        await self._bootstrap(addresses[0] if addresses else "127.0.0.1", first_service_ip)
        await self._bootstrap_policy()

        self._external_address = f"{addresses[0] if addresses else '127.0.0.1'}:" \
                                 f"{opts.secure_port}"
        authenticator = Authenticator(token_file=opts.token_auth_file, token_authenticators=[
            ServiceAccountTokenAuthenticator(self.tokens, self.cached_object)])
        app = self.make_app(authenticator=authenticator)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, opts.bind_address, opts.secure_port,
                           ssl_context=pki_mod.server_ssl_context(pki), backlog=1024)
        await site.start()
        self.ready = True
        log.info("apiserver serving on https://%s:%d", opts.bind_address, opts.secure_port)

    async def stop(self) -> None:
        self.ready = False
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
        if self.kubelet is not None:
            await self.kubelet.close()
        await self.cache.stop()
        await self.storage.close()

    def add_background(self, task: asyncio.Task[None]) -> None:
        self._background.append(task)

    def cached_object(self, plural: str, namespace: str | None, name: str) -> Obj | None:
        """A core/v1 object from the watch cache (token checks: cheap, no storage read)."""
        rt = self.registry.lookup("", "v1", plural)
        cached = self.cache.get(rt.key(namespace, name)) if rt is not None else None
        return orjson.loads(cached.raw) if cached is not None else None

    def _object_counts(self) -> dict[str, int]:
        counts = {}
        for rt in self.registry.resources:
            name = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
            counts[name] = self.cache.count(rt.prefix)
        return counts

    # --- bootstrap -------------------------------------------------------------------

    async def _ensure(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        if await self.storage.get(rt.key(meta.get("namespace"), meta["name"])) is None:
            with contextlib.suppress(status.StatusError):
                await self.store.create(rt, meta.get("namespace"), obj)

    async def _bootstrap_policy(self) -> None:
        """The default RBAC roles and bindings (kube's ``rbac/bootstrap-roles``), then the
        aggregated ClusterRoles settled."""
        done = await bootstrap_reconciler.reconcile_objects(
            self.store, self.registry, [*bootstrap_policy.bootstrap_objects(),
                                        *bootstrap_policy.keelson_cluster_role_bindings()])
        aggregated = await bootstrap_reconciler.settle_aggregation(self.store, self.registry)
        if done or aggregated:
            log.info("bootstrap policy reconciled: %s, %d aggregated ClusterRoles updated",
                     ", ".join(f"{count} {op}" for op, count in sorted(done.items())) or
                     "nothing to write", aggregated)

    async def _bootstrap(self, node_ip: str, service_ip: str) -> None:
        """System namespaces and the ``kubernetes`` Service, as kube-apiserver creates them."""
        namespaces = self.registry.lookup("", "v1", "namespaces")
        services = self.registry.lookup("", "v1", "services")
        endpoints = self.registry.lookup("", "v1", "endpoints")
        slices = self.registry.lookup("discovery.k8s.io", "v1", "endpointslices")
        assert namespaces and services and endpoints and slices
        for name in SYSTEM_NAMESPACES:
            await self._ensure(namespaces, {"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": name}})
        labels = {"component": "apiserver", "provider": "kubernetes"}
        port = self.options.secure_port
        await self._ensure(services, {
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
            "spec": {"type": "ClusterIP", "clusterIP": service_ip,
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                "targetPort": port}]}})
        await self._ensure(endpoints, {
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {SKIP_MIRROR_LABEL: "true"}},
            "subsets": [{"addresses": [{"ip": node_ip}],
                         "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]})
        await self._ensure(slices, {
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: "kubernetes",
                                    MANAGED_BY_LABEL: "keelson-apiserver"},
                         "annotations": {LAST_CHANGE_TRIGGER_TIME_ANNOTATION: utc_now()}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [node_ip], "conditions": {"ready": True,
                                                                  "serving": True,
                                                                  "terminating": False}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]})

    # --- HTTP ------------------------------------------------------------------------

    def make_app(self, *, authenticator: Authenticator) -> web.Application:
        assert self.kubelet is not None and self.tokens is not None
        resources = ResourceHandler(
            registry=self.registry, store=self.store, cache=self.cache, metrics=self.metrics,
            kubelet_client=self.kubelet, bookmark_interval=self.options.bookmark_interval,
            resource_routes={
                ("", "serviceaccounts", "token", "create"):
                    partial(token_handlers.create_token, self.store, self.tokens),
                ("authentication.k8s.io", "tokenreviews", None, "create"):
                    partial(token_handlers.create_token_review, authenticator),
                **reviews.review_routes(self.authorization),
            })
        discovery = DiscoveryHandler(self.registry,
                                     server_address=f"{self.options.bind_address}:"
                                                    f"{self.options.secure_port}")
        app = web.Application(
            middlewares=[self._metrics_middleware(), status_middleware,
                         auth_middleware(authenticator, public_paths=PUBLIC_PATHS),
                         impersonation_middleware(self.authorization.chain),
                         authorization_middleware(self.authorization,
                                                  catch_up=self._cache_catch_up())],
            client_max_size=req.MAX_BODY_BYTES + 1)
        app.add_routes(discovery.routes())
        app.add_routes(token_handlers.discovery_routes(
            self.tokens, external_address=self._external_address,
            jwks_uri=self.options.service_account_jwks_uri or None))
        app.add_routes([
            web.get("/healthz", self._health), web.get("/livez", self._health),
            web.get("/readyz", self._readyz),
            web.get("/metrics", metrics_handler(self.metrics.registry)),
            web.route("*", "/api/v1/{tail:.+}", resources.handle),
            web.route("*", "/apis/{group}/{version}/{tail:.+}", resources.handle),
        ])
        return app

    def _cache_catch_up(self) -> Any:
        """For a refused request: wait once for the watch cache (which feeds the
        authorizer) to reach storage, so a binding created a moment ago counts."""
        return cache_catch_up(self.storage.current_revision, lambda: self.cache.revision,
                              lambda revision: self.cache.wait_for_revision(revision))

    def _metrics_middleware(self) -> Any:
        metrics = self.metrics

        @web.middleware
        async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
            kind = "readOnly" if request.method in ("GET", "HEAD") else "mutating"
            gauge = metrics.inflight.labels(kind)
            gauge.inc()
            started = time.perf_counter()
            code = 500
            try:
                response = await handler(request)
                code = response.status
                return response
            finally:
                gauge.dec()
                info = request.get(req.INFO)
                if info is not None:
                    rt = info.resource
                    scope = ("resource" if info.name else
                             "namespace" if info.namespace else "cluster")
                    labels = (info.metric_verb, rt.group, rt.version, rt.plural,
                              info.subresource or "", scope, "apiserver")
                    metrics.requests.labels(*labels, str(code)).inc()
                    if info.verb != "watch":
                        metrics.duration.labels(*labels).observe(time.perf_counter() - started)

        return middleware

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(status=503, text="[-]apiserver not ready\nreadyz check failed")
        return web.Response(text="ok")



@contextlib.asynccontextmanager
async def serving(options: APIServerOptions) -> AsyncIterator[APIServer]:
    """A started apiserver, stopped on exit. Control loops are not part of it: the
    composition root (``keelson/``) starts the scheduler and controllers beside it."""
    server = APIServer(options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def write_node_kubeconfig(server: APIServer, node_name: str) -> Path:
    """A kubeconfig for a node agent on this machine: its own client certificate
    (CN ``system:node:<name>``, group ``system:nodes``), like a kubelet's."""
    assert server.pki is not None
    cert, key = pki_mod.issue_client_cert(server.pki, common_name=f"system:node:{node_name}",
                                          groups=["system:nodes"])
    path = server.options.data_dir / "agent.kubeconfig"
    pki_mod.write_kubeconfig(path, server=f"https://127.0.0.1:{server.options.secure_port}",
                             ca_pem=server.pki.ca_cert.read_bytes(), cert_pem=cert, key_pem=key,
                             user=f"system:node:{node_name}")
    return path
