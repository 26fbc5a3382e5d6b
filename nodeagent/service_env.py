"""Service environment variables (kubelet's ``getServiceEnvVarMap`` and ``FromServices``).

Every container gets, for the ``default/kubernetes`` Service, and -- unless the pod says
``enableServiceLinks: false`` -- for every Service of its own namespace that has a cluster
IP, Docker-link style variables. For a Service ``my-svc`` with first port 80/TCP:

    MY_SVC_SERVICE_HOST=10.96.0.7   MY_SVC_SERVICE_PORT=80   MY_SVC_SERVICE_PORT_<NAME>=80
    MY_SVC_PORT=tcp://10.96.0.7:80  MY_SVC_PORT_80_TCP=tcp://10.96.0.7:80
    MY_SVC_PORT_80_TCP_PROTO=tcp    MY_SVC_PORT_80_TCP_PORT=80   MY_SVC_PORT_80_TCP_ADDR=10.96.0.7

(names upper-cased, ``-`` -> ``_``; ``_SERVICE_PORT_<NAME>`` for each named port, the
``_PORT_<port>_<PROTO>`` group for every port). A Service of the pod's namespace named
``kubernetes`` wins over the default one, as in kubelet; a container's own ``env`` wins
over all of them.

``ServiceLister`` is the agent's view: a Services informer (kubelet has one too) whose
store keeps only the fields used here, indexed by namespace, so a container start costs a
dictionary lookup and never a LIST.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from apiclient.store import NAMESPACE_INDEX, Store, namespace_index
from nodeagent.container_spec import ContainerConfigError

MASTER_NAMESPACE = "default"
MASTER_SERVICES = frozenset({"kubernetes"})


class ServicesNotSynced(ContainerConfigError):
    def __init__(self) -> None:
        super().__init__("services have not yet been read at least once, cannot construct envvars")


def env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def service_ip_set(service: Mapping[str, Any]) -> bool:
    ip = (service.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def _host_port(ip: str, port: int) -> str:
    try:
        if ipaddress.ip_address(ip).version == 6:
            return f"[{ip}]:{port}"
    except ValueError:
        pass
    return f"{ip}:{port}"


def _link_variables(prefix: str, ip: str, ports: list[Mapping[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for index, port in enumerate(ports):
        protocol = port.get("protocol") or "TCP"
        number = int(port["port"])
        url = f"{protocol.lower()}://{_host_port(ip, number)}"
        if index == 0:
            found[f"{prefix}_PORT"] = url
        group = f"{prefix}_PORT_{number}_{protocol.upper()}"
        found[group] = url
        found[f"{group}_PROTO"] = protocol.lower()
        found[f"{group}_PORT"] = str(number)
        found[f"{group}_ADDR"] = ip
    return found


def from_services(services: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """kubelet's ``envvars.FromServices`` for Services with a cluster IP and a port."""
    env: dict[str, str] = {}
    for service in services:
        spec = service.get("spec") or {}
        ports = spec.get("ports") or []
        if not service_ip_set(service) or not ports:
            continue
        prefix = env_name(service["metadata"]["name"])
        ip = spec["clusterIP"]
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(int(ports[0]["port"]))
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{env_name(port['name'])}"] = str(int(port["port"]))
        env.update(_link_variables(prefix, ip, ports))
    return env


def service_env(
    services: Iterable[Mapping[str, Any]], *, namespace: str, enable_links: bool
) -> dict[str, str]:
    """The service variables of a pod in ``namespace`` (``enableServiceLinks``)."""
    chosen: dict[str, Mapping[str, Any]] = {}
    for service in services:
        if not service_ip_set(service):
            continue
        meta = service["metadata"]
        name = meta["name"]
        service_namespace = meta.get("namespace")
        if service_namespace == MASTER_NAMESPACE and name in MASTER_SERVICES:
            chosen.setdefault(name, service)
        elif service_namespace == namespace and enable_links:
            chosen[name] = service
    return from_services(chosen[name] for name in sorted(chosen))


def compact_service(service: dict) -> dict:
    """What the agent keeps of a Service (the informer's transform)."""
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "spec": {
            "clusterIP": spec.get("clusterIP"),
            "ports": [
                {"name": p.get("name"), "port": p.get("port"), "protocol": p.get("protocol")}
                for p in spec.get("ports") or []
            ],
        },
    }


class ServiceLister:
    """The Services a pod's env is built from, read from an informer's store."""

    def __init__(self, store: Store, *, synced: Any) -> None:
        self._store = store
        self._synced = synced  # () -> bool
        store.add_indexer(NAMESPACE_INDEX, namespace_index)

    def env_for(self, pod: Mapping[str, Any]) -> dict[str, str]:
        if not self._synced():
            raise ServicesNotSynced()
        namespace = pod["metadata"].get("namespace") or "default"
        enable_links = (pod.get("spec") or {}).get("enableServiceLinks")
        enable_links = True if enable_links is None else bool(enable_links)
        services = list(self._store.by_index(NAMESPACE_INDEX, MASTER_NAMESPACE))
        if namespace != MASTER_NAMESPACE and enable_links:
            services += self._store.by_index(NAMESPACE_INDEX, namespace)
        return service_env(services, namespace=namespace, enable_links=enable_links)
