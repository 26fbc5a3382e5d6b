"""The API side of the node agent's e2e tests: a real ``keelson apiserver``, a node per test.

The apiserver (``tests.support.apiserver``, controllers off) is shared by a module; the
tests play scheduler by creating pods with ``spec.nodeName`` set. Each test gets a ``Node``:
a unique node name, a namespace of its own for its pods, a data dir, a ``kt...`` bridge
and a test CIDR. The agent authenticates as a kubelet does, with a client certificate for
``system:node:<name>`` issued from the test server's CA; the test itself acts as the admin.

``Node.cleanup`` (run by the fixtures, also on failure) removes every container of this
node's agent (label ``io.keelson.agent``, the id in its data dir) or of its namespace, and
its bridge and pod veths; the API objects go with the apiserver's data dir.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker

from apiclient.resources import NAMESPACES, PODS
from nodeagent.network import netlink
from nodeagent.network.bridge import host_veth_name
from nodeagent.runtime.interface import LABEL_AGENT, LABEL_POD_NAMESPACE, LABEL_POD_UID
from tests.e2e.nodeagent.conftest import remove_labelled
from tests.support.apiserver import ApiServer


async def eventually(check: Callable[[], object | Awaitable[object]], *,
                     timeout: float = 20.0) -> None:
    """Poll ``check`` (plain or async) until it is truthy; a status not there yet
    (KeyError, IndexError, TypeError) counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
        except (KeyError, IndexError, TypeError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.1)


def docker_ids(uid: str) -> set[str]:
    """Ids of every container (any state) of the pod with ``uid``."""
    api = docker.APIClient(version="1.41")
    try:
        return {
            c["Id"] for c in api.containers(all=True, filters={"label": [f"{LABEL_POD_UID}={uid}"]})
        }
    finally:
        api.close()


def kubelet_client_ssl(server: ApiServer) -> ssl.SSLContext:
    """What the apiserver presents to a kubelet: a client certificate from the cluster CA
    (the admin's here). The kubelet's serving certificate is its own, so it is not checked."""
    pki = server.data_dir / "pki"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return context


@dataclass
class Node:
    """One test's node on the shared test apiserver."""

    server: ApiServer
    name: str
    namespace: str
    data_dir: Path
    bridge: str
    pod_cidr: str
    uids: set[str] = field(default_factory=set)  # every pod created, for veth clean-up

    @functools.cached_property
    def kubeconfig(self) -> Path:
        """The node's own credentials (``system:node:<name>``)."""
        return self.server.node_kubeconfig(self.name)

    def agent_id(self) -> str | None:
        """The id the agent put on its containers, once it has started."""
        path = self.data_dir / "agent-id"
        if not path.exists():
            return None
        return path.read_text().strip() or None

    def pod_manifest(self, name: str, containers: list[dict], **spec) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"nodeName": self.name, "containers": containers, **spec},
        }

    def create_pod(self, name: str, containers: list[dict], **spec) -> dict:
        """Create a pod bound to this node, as the admin (blocking; for process tests)."""
        code, _, pod = self.server.http(
            "POST", PODS.path(namespace=self.namespace),
            self.pod_manifest(name, containers, **spec))
        assert code == 201, pod
        self.uids.add(pod["metadata"]["uid"])
        return pod

    def get_pod(self, name: str) -> dict | None:
        """The pod as the admin reads it (blocking), or None once it is gone."""
        code, _, pod = self.server.http("GET", PODS.path(namespace=self.namespace, name=name))
        if code == 404:
            return None
        assert code == 200, pod
        return pod

    async def cleanup(self) -> None:
        """Remove what this node's agent left on the host (its agent must be stopped)."""
        labels = [f"{LABEL_POD_NAMESPACE}={self.namespace}"]
        if agent := self.agent_id():
            labels.append(f"{LABEL_AGENT}={agent}")
        for label in labels:
            await asyncio.to_thread(remove_labelled, label)
        for link in [self.bridge, *(host_veth_name(uid) for uid in self.uids)]:
            await asyncio.to_thread(netlink.delete_link, link)


def new_node(server: ApiServer, data_dir: Path) -> Node:
    """A fresh node identity and namespace (created as the admin) on ``server``."""
    suffix = secrets.token_hex(3)
    node = Node(server=server, name=f"kt-node-{suffix}", namespace=f"kt-{suffix}",
                data_dir=data_dir, bridge=f"kt-br{secrets.token_hex(2)}",
                # a subnet of its own, so a bridge leaked by a crashed run cannot shadow it
                pod_cidr=f"10.251.{secrets.randbelow(200) + 10}.0/24")
    code, _, body = server.http("POST", NAMESPACES.path(),
                                {"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": node.namespace}})
    assert code == 201, body
    return node
