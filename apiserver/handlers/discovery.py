"""Discovery (``/api``, ``/apis``, group and group-version documents), ``/version``, OpenAPI.

kubectl builds its idea of what exists from these documents (``kubectl get po`` resolves
the short name ``po`` here), so they are derived from the registry and nothing else.
Both forms are served: the legacy per-group documents and the aggregated
``apidiscovery.k8s.io/v2`` list that recent kubectl asks for first (one request instead
of one per group version).
"""

from __future__ import annotations

import platform
from typing import Any

import orjson
from aiohttp import web

from apiserver import openapi, status
from apiserver.handlers import request as req
from apiserver.registry import SUBRESOURCE_VERBS, Registry, ResourceType, subresource_kind

Obj = dict[str, Any]

KUBERNETES_VERSION = "v1.37.0"
OPENAPI_V2_PROTOBUF_RESPONSE_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def version_info() -> Obj:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return {
        "major": major, "minor": minor, "gitVersion": f"{KUBERNETES_VERSION}+keelson",
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "",
        "goVersion": f"python{platform.python_version()}", "compiler": "cpython",
        "platform": f"linux/{platform.machine()}",
    }


def _singular(rt: ResourceType) -> str:
    return rt.singular or rt.kind.lower()


def resource_list(registry: Registry, group: str, version: str) -> Obj:
    entries: list[Obj] = []
    for rt in registry.in_group_version(group, version):
        entry: Obj = {"name": rt.plural, "singularName": _singular(rt),
                      "namespaced": rt.namespaced, "kind": rt.kind, "verbs": list(rt.verbs)}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        entries.append(entry)
        for sub in sorted(rt.subresources):
            sub_group, sub_version, sub_kind = subresource_kind(rt, sub)
            sub_entry: Obj = {"name": f"{rt.plural}/{sub}", "singularName": "",
                              "namespaced": rt.namespaced, "kind": sub_kind,
                              "verbs": list(SUBRESOURCE_VERBS[sub])}
            if sub_group != rt.group or sub_version != rt.version:
                sub_entry["group"], sub_entry["version"] = sub_group, sub_version
            entries.append(sub_entry)
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": entries}


def api_group(registry: Registry, group: str) -> Obj:
    versions = registry.group_versions()[group]
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": listed,
            "preferredVersion": listed[0]}


def _aggregated_group(registry: Registry, group: str) -> Obj:
    versions = []
    for version in registry.group_versions()[group]:
        resources = []
        for rt in registry.in_group_version(group, version):
            entry: Obj = {
                "resource": rt.plural,
                "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
                "scope": "Namespaced" if rt.namespaced else "Cluster",
                "singularResource": _singular(rt),
                "verbs": list(rt.verbs),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            subs = []
            for sub in sorted(rt.subresources):
                sub_group, sub_version, sub_kind = subresource_kind(rt, sub)
                subs.append({"subresource": sub, "verbs": list(SUBRESOURCE_VERBS[sub]),
                             "responseKind": {"group": sub_group, "version": sub_version,
                                              "kind": sub_kind}})
            if subs:
                entry["subresources"] = subs
            resources.append(entry)
        versions.append({"version": version, "resources": resources, "freshness": "Current"})
    meta: Obj = {"name": group} if group else {}
    return {"metadata": meta, "versions": versions}


def _wants_aggregated(request: web.Request) -> bool:
    for media in request.headers.get("Accept", "").split(","):
        params = dict(p.strip().split("=", 1) for p in media.split(";")[1:] if "=" in p)
        if params.get("as") == "APIGroupDiscoveryList" and params.get("v") == "v2" \
                and params.get("g") == "apidiscovery.k8s.io":
            return True
        if media.strip().split(";")[0] in ("application/json", "*/*"):
            return False
    return False


def _aggregated(registry: Registry, groups: list[str]) -> web.Response:
    body = {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {}, "items": [_aggregated_group(registry, g) for g in groups]}
    return web.Response(body=orjson.dumps(body), headers={"Content-Type": AGGREGATED_V2,
                                                          "Vary": "Accept"})


class DiscoveryHandler:
    def __init__(self, registry: Registry, *, server_address: str) -> None:
        self.registry = registry
        self.server_address = server_address

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api", self.core_versions),
            web.get("/api/", self.core_versions),
            web.get("/api/v1", self.core_resources),
            web.get("/api/v1/", self.core_resources),
            web.get("/apis", self.groups),
            web.get("/apis/", self.groups),
            web.get("/apis/{group}", self.group),
            web.get("/apis/{group}/", self.group),
            web.get("/apis/{group}/{version}", self.group_resources),
            web.get("/apis/{group}/{version}/", self.group_resources),
            web.get("/version", self.version),
            web.get("/version/", self.version),
            web.get("/openapi/v2", self.openapi_v2),
            web.get("/openapi/v3", self.openapi_v3_index),
            web.get("/openapi/v3/{path:.*}", self.openapi_v3),
        ]

    async def core_versions(self, request: web.Request) -> web.Response:
        if _wants_aggregated(request):
            return _aggregated(self.registry, [""])
        return req.json_response({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": self.server_address}]})

    async def core_resources(self, request: web.Request) -> web.Response:
        return req.json_response(resource_list(self.registry, "", "v1"))

    def _named_groups(self) -> list[str]:
        return [g for g in self.registry.group_versions() if g]

    async def groups(self, request: web.Request) -> web.Response:
        if _wants_aggregated(request):
            return _aggregated(self.registry, self._named_groups())
        return req.json_response({"kind": "APIGroupList", "apiVersion": "v1",
                                  "groups": [api_group(self.registry, g)
                                             for g in self._named_groups()]})

    async def group(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        if group not in self._named_groups():
            raise status.not_found("", "groups", group)
        return req.json_response(api_group(self.registry, group))

    async def group_resources(self, request: web.Request) -> web.Response:
        group, version = request.match_info["group"], request.match_info["version"]
        if version not in self.registry.group_versions().get(group, []) or not group:
            raise status.StatusError(404, "NotFound",
                                     "the server could not find the requested resource")
        return req.json_response(resource_list(self.registry, group, version))

    async def version(self, request: web.Request) -> web.Response:
        return req.json_response(version_info())

    async def openapi_v2(self, request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        if "protobuf" in accept:
            # Clients ask with the deprecated "...spec.v2@v1.0+protobuf" name, but the '@'
            # is not valid in a Content-Type (Go's mime parser rejects it), so kube-openapi
            # answers with the ".v1.0" spelling; so do we.
            return web.Response(body=openapi.openapi_v2_protobuf(),
                                headers={"Content-Type": OPENAPI_V2_PROTOBUF_RESPONSE_TYPE})
        return req.raw_json_response(openapi.openapi_v2())

    async def openapi_v3_index(self, request: web.Request) -> web.Response:
        return req.json_response(openapi.openapi_v3_index())

    async def openapi_v3(self, request: web.Request) -> web.Response:
        document = openapi.openapi_v3_document(request.match_info["path"].strip("/"))
        if document is None:
            raise status.StatusError(404, "NotFound",
                                     "the server could not find the requested resource")
        return req.raw_json_response(document)
