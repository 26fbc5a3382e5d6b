"""Subresources with handlers of their own: ``pods/binding``, ``{deployments,replicasets}/
scale``, ``pods/log``. ``/status`` (writes change only ``.status``) and
``namespaces/{name}/finalize`` (a plain update) are the resource's own get, update and
patch, routed by :mod:`.resources`.

Each handler takes the REST store and the parsed request, never the resource handler,
so this module depends on :mod:`.resources` not at all.

- binding: the scheduler's one-shot ``spec.nodeName`` assignment; a second binding is a
  409, and the PodScheduled condition is set like kube-apiserver's ``assignPod``.
- scale: the owner seen as an ``autoscaling/v1`` Scale; ``kubectl scale`` patches it.
- log: proxied to the kubelet API of the pod's node, streamed through (``-f`` included).
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

import aiohttp
from aiohttp import web

from apiclient.meta import utc_now
from apiclient.selectors import label_selector_from_spec
from apiserver import status
from apiserver.handlers import request as req
from apiserver.handlers.request import RequestInfo
from apiserver.rest import RestStore

Obj = dict[str, Any]


# --- binding ---------------------------------------------------------------------------

async def bind(store: RestStore, request: web.Request, info: RequestInfo) -> web.Response:
    binding = await req.read_object(request)
    target = binding.get("target") or {}
    node = target.get("name")
    if not node:
        raise status.invalid("Binding", "", info.name or "",
                             [status.field_cause("target.name", "Required value",
                                                 reason="FieldValueRequired")])
    if target.get("kind", "Node") != "Node":
        raise status.invalid("Binding", "", info.name or "", [
            status.field_cause("target.kind", f'Invalid value: "{target.get("kind")}": '
                               'must be empty or "Node"')])
    name = info.name or ""

    def assign(pod: Obj) -> Obj:
        spec = pod.setdefault("spec", {})
        if pod["metadata"].get("deletionTimestamp"):
            raise status.conflict("", "pods", name, "pod is being deleted, cannot be assigned "
                                  "to a host")
        if spec.get("nodeName"):
            raise status.conflict("", "pods", name,
                                  f"pod {name} is already assigned to node "
                                  f'"{spec["nodeName"]}"')
        spec["nodeName"] = node
        annotations = (binding.get("metadata") or {}).get("annotations") or {}
        if annotations:
            pod["metadata"].setdefault("annotations", {}).update(annotations)
        conditions = pod.setdefault("status", {}).setdefault("conditions", [])
        conditions[:] = [c for c in conditions if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True",
                           "lastProbeTime": None, "lastTransitionTime": utc_now()})
        return pod

    await store.update_with(info.resource, info.namespace, name, assign, subresource="binding")
    return req.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "code": 201}, code=201)


# --- scale -----------------------------------------------------------------------------

def to_scale(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    spec, obj_status = obj.get("spec") or {}, obj.get("status") or {}
    selector = label_selector_from_spec(spec.get("selector"))
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                          "creationTimestamp") if k in meta},
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {"replicas": obj_status.get("replicas", 0), "selector": str(selector)},
    }


async def get_scale(store: RestStore, request: web.Request, info: RequestInfo) -> web.Response:
    obj = await store.get(info.resource, info.namespace, info.name or "")
    return req.json_response(to_scale(obj))


async def update_scale(store: RestStore, request: web.Request, info: RequestInfo
                       ) -> web.Response:
    rt, name = info.resource, info.name or ""
    if info.verb == "update":
        scale = await req.read_object(request)
        patch_type, patch = None, None
    else:
        patch_type, patch = await req.read_patch(request)
        scale = None

    def rescale(obj: Obj) -> Obj:
        current = to_scale(obj)
        new_scale = scale if patch_type is None else store.patcher(
            _SCALE_TYPE, current, "merge" if patch_type == "strategic" else patch_type, patch)
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise status.invalid("Scale", "autoscaling", name, [status.field_cause(
                "spec.replicas", f"Invalid value: {replicas}: must be greater than or equal "
                "to 0")])
        rv = (new_scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != obj["metadata"]["resourceVersion"]:
            raise status.conflict(rt.group, rt.plural, name, status.MODIFIED_CONFLICT)
        obj.setdefault("spec", {})["replicas"] = replicas
        return obj

    updated = await store.update_with(rt, info.namespace, name, rescale)
    return req.json_response(to_scale(updated))


class _ScaleType:
    """Stands in for a ResourceType when patching a Scale (merge semantics only)."""

    group, version, kind, plural = "autoscaling", "v1", "Scale", "scale"
    group_version = "autoscaling/v1"


_SCALE_TYPE: Any = _ScaleType()


# --- logs ------------------------------------------------------------------------------

class KubeletClient:
    """Talks to node agents' kubelet API (HTTPS) with the apiserver's client certificate.

    Like kube-apiserver without ``--kubelet-certificate-authority``, the kubelet's
    self-signed serving certificate is not verified; the client certificate identifies
    the apiserver to the kubelet.
    """

    def __init__(self, *, cert_file: str | None = None, key_file: str | None = None) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if cert_file and key_file:
            context.load_cert_chain(cert_file, key_file)
        self._ssl = context
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _kubelet_address(node: Obj) -> tuple[str, int]:
    node_status = node.get("status") or {}
    port = (((node_status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {})
            .get("Port")) or 10250
    addresses = {a.get("type"): a.get("address") for a in node_status.get("addresses") or []}
    host = addresses.get("InternalIP") or addresses.get("Hostname") or addresses.get("ExternalIP")
    if not host:
        raise status.StatusError(503, "ServiceUnavailable",
                                 f'node "{node["metadata"]["name"]}" has no address to reach '
                                 "its kubelet")
    return host, int(port)


async def logs(store: RestStore, request: web.Request, info: RequestInfo, *,
               kubelet: KubeletClient) -> web.StreamResponse:
    pod = await store.get(info.resource, info.namespace, info.name or "")
    spec = pod.get("spec") or {}
    containers = [c.get("name") for c in spec.get("containers") or []]
    container = request.query.get("container") or (containers[0] if len(containers) == 1
                                                   else None)
    if container is None:
        raise status.bad_request(f"a container name must be specified for pod {info.name}, "
                                 f"choose one of: [{' '.join(containers)}]")
    all_names = containers + [c.get("name") for c in spec.get("initContainers") or []]
    if container not in all_names:
        raise status.bad_request(f"container {container} is not valid for pod {info.name}")
    node_name = spec.get("nodeName")
    if not node_name:
        raise status.bad_request(f'container "{container}" in pod "{info.name}" is waiting to '
                                 f"start: the pod is not scheduled to a node yet")
    nodes = store.registry.lookup("", "v1", "nodes")
    assert nodes is not None
    host, port = _kubelet_address(await store.get(nodes, None, node_name))
    params = {k: v for k, v in request.query.items()
              if k in ("follow", "previous", "tailLines", "timestamps", "sinceSeconds",
                       "limitBytes")}
    url = f"https://{host}:{port}/containerLogs/{info.namespace}/{info.name}/{container}"
    try:
        upstream = await kubelet.session().get(url, params=params)
    except (aiohttp.ClientError, OSError) as exc:
        raise status.StatusError(503, "ServiceUnavailable",
                                 f"Get {url}: cannot reach the kubelet on node {node_name}: "
                                 f"{exc}") from None
    async with upstream:
        if upstream.status != 200:
            text = (await upstream.text())[:1000]
            raise status.StatusError(upstream.status if upstream.status >= 400 else 502,
                                     "BadRequest" if upstream.status == 400 else "InternalError",
                                     text.strip() or f"kubelet answered {upstream.status}")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        return response
