"""TokenRequest, TokenReview and ServiceAccount issuer discovery.

- ``POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`` (kube's ``TokenREST``): a
  signed token for the ServiceAccount, for the requested audiences (default: the API
  audiences) and lifetime (default 1 h, at least 10 min, at most 2^32 s), optionally
  bound to a Pod, Secret or Node that must exist (and have the given uid). A pod-bound
  token also names the pod's node. Nothing is stored: the answer is the TokenRequest with
  ``status.token`` and ``status.expirationTimestamp``.
- ``POST /apis/authentication.k8s.io/v1/tokenreviews`` (kube's tokenreview REST): who a
  token belongs to, by the same authenticators a request's bearer token goes through;
  ``status.authenticated`` false with ``status.error`` saying why otherwise.
- ``/.well-known/openid-configuration`` and ``/openid/v1/jwks`` (kube's
  ``openidmetadata``): the issuer's discovery document and public keys, so that anyone
  can verify our tokens offline. Served to authenticated callers, as kube does by default.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from apiclient.meta import format_time
from apiserver import status
from apiserver.auth.authn import Authenticator, InvalidTokenError
from apiserver.auth.filters import CONTEXT
from apiserver.auth.serviceaccount import (
    JWKS_PATH,
    OPENID_CONFIG_PATH,
    BoundObject,
    ObjectRef,
    TokenAuthority,
)
from apiserver.handlers import request as req
from apiserver.handlers.request import RequestInfo
from apiserver.rest import RestStore

Obj = dict[str, Any]

AUTHENTICATION_V1 = "authentication.k8s.io/v1"
DEFAULT_EXPIRATION_SECONDS = 3600  # SetDefaults_TokenRequestSpec
MIN_EXPIRATION_SECONDS = 10 * 60
MAX_EXPIRATION_SECONDS = 1 << 32
_BINDABLE = ("Pod", "Secret", "Node")


def _check_type(body: Obj, kind: str) -> None:
    api_version, body_kind = body.get("apiVersion"), body.get("kind")
    if api_version and api_version != AUTHENTICATION_V1:
        raise status.bad_request(f"the API version in the data ({api_version}) does not match "
                                 f"the expected API version ({AUTHENTICATION_V1})")
    if body_kind and body_kind != kind:
        raise status.bad_request(f"the kind in the data ({body_kind}) does not match the "
                                 f"expected kind ({kind})")


# --- TokenRequest ------------------------------------------------------------------------

def _invalid(name: str, field: str, value: Any, detail: str) -> status.StatusError:
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    return status.invalid("TokenRequest", "authentication.k8s.io", name, [
        status.field_cause(field, f"Invalid value: {shown}: {detail}")])


def _expiration(spec: Obj) -> int:
    seconds = spec.get("expirationSeconds")
    if seconds is None:
        return DEFAULT_EXPIRATION_SECONDS
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise status.bad_request("spec.expirationSeconds must be an integer")
    if seconds < MIN_EXPIRATION_SECONDS:
        raise _invalid("", "spec.expirationSeconds", seconds,
                       "may not specify a duration less than 10 minutes")
    if seconds > MAX_EXPIRATION_SECONDS:
        raise _invalid("", "spec.expirationSeconds", seconds,
                       "may not specify a duration larger than 2^32 seconds")
    return seconds


async def _bound_object(store: RestStore, namespace: str, sa_name: str, ref: Obj
                        ) -> tuple[BoundObject, ObjectRef | None]:
    """The object a token is bound to (and, for a pod, its node), as kube resolves it."""
    api_version, kind = str(ref.get("apiVersion") or ""), str(ref.get("kind") or "")
    group = api_version.rpartition("/")[0]
    name = str(ref.get("name") or "")
    if group or kind not in _BINDABLE:
        version = api_version.rpartition("/")[2]
        raise status.bad_request(f"cannot bind token to object of type {group}/{version}, "
                                 f"Kind={kind}")
    rt = store.registry.lookup("", "v1", kind.lower() + "s")
    assert rt is not None
    obj = await store.get(rt, namespace if rt.namespaced else None, name)
    uid = obj["metadata"]["uid"]
    node: ObjectRef | None = None
    if kind == "Pod":
        spec = obj.get("spec") or {}
        if spec.get("serviceAccountName") != sa_name:
            raise status.bad_request(f'cannot bind token for serviceaccount "{sa_name}" to pod '
                                     f"running with different serviceaccount name.")
        node = await _pod_node(store, str(spec.get("nodeName") or ""))
    if ref.get("uid") and ref["uid"] != uid:
        raise status.conflict("", kind, name, f"the UID in the bound object reference "
                              f"({ref['uid']}) does not match the UID in record. The object "
                              f"might have been deleted and then recreated")
    return BoundObject(kind, name, uid), node


async def _pod_node(store: RestStore, node_name: str) -> ObjectRef | None:
    """The node a pod runs on, for its token's claims; the name alone when it is gone."""
    if not node_name:
        return None
    nodes = store.registry.lookup("", "v1", "nodes")
    assert nodes is not None
    try:
        node = await store.get(nodes, None, node_name)
    except status.StatusError as error:
        if error.code != 404:
            raise
        return ObjectRef(node_name, "")
    return ObjectRef(node_name, node["metadata"].get("uid", ""))


async def create_token(store: RestStore, authority: TokenAuthority, request: web.Request,
                       info: RequestInfo) -> web.Response:
    """``serviceaccounts/{name}/token``: issue a bound token (kube ``TokenREST.Create``)."""
    name, namespace = info.name or "", info.namespace or ""
    body = await req.read_object(request)
    _check_type(body, "TokenRequest")
    meta = body.get("metadata") or {}
    if meta.get("name") and meta["name"] != name:
        raise _invalid(name, "metadata.name", meta["name"],
                       "must match the service account name if specified")
    if meta.get("namespace") and meta["namespace"] != namespace:
        raise _invalid(name, "metadata.namespace", meta["namespace"],
                       "must match the service account namespace if specified")
    account = await store.get(info.resource, namespace, name)
    # NodeRestriction: a node may only get tokens bound to its own pods (kube names the
    # request after the ServiceAccount before admission sees it).
    await store.admit(request.get(CONTEXT), "CREATE", info.resource, "token",
                      {**body, "metadata": {**meta, "name": name, "namespace": namespace}},
                      None, name=name, namespace=namespace)
    sa_uid = account["metadata"]["uid"]
    if meta.get("uid") and meta["uid"] != sa_uid:
        raise status.conflict("authentication.k8s.io", "TokenRequest", name,
                              f"the UID in the token request ({meta['uid']}) does not match "
                              f"the UID of the service account ({sa_uid})")
    spec = body.get("spec") or {}
    audiences = [str(a) for a in spec.get("audiences") or []] or list(authority.api_audiences)
    seconds = _expiration(spec)
    ref = spec.get("boundObjectRef")
    bound, node = (await _bound_object(store, namespace, name, ref)) if ref else (None, None)
    now = time.time()
    token, _ = authority.issue_token(namespace, name, sa_uid, audiences=audiences,
                                     expiration_seconds=seconds, bound_object=bound,
                                     node=node, now=now)
    out_spec: Obj = {"audiences": audiences, "expirationSeconds": seconds}
    if ref:
        out_spec["boundObjectRef"] = ref  # as requested (kube answers the request's spec)
    expires = datetime.fromtimestamp(int(now) + seconds, tz=UTC)
    return req.json_response({
        "kind": "TokenRequest", "apiVersion": AUTHENTICATION_V1,
        "metadata": {"name": name, "namespace": namespace, "uid": sa_uid,
                     "creationTimestamp": format_time(datetime.fromtimestamp(now, tz=UTC))},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": format_time(expires)},
    }, code=201)


# --- TokenReview -------------------------------------------------------------------------

async def create_token_review(authenticator: Authenticator, request: web.Request,
                              info: RequestInfo) -> web.Response:
    """``tokenreviews``: authenticate a token on someone's behalf (nothing is stored)."""
    body = await req.read_object(request)
    _check_type(body, "TokenReview")
    spec = body.get("spec") or {}
    token = spec.get("token")
    if not token or not isinstance(token, str):
        raise status.bad_request("token is required for TokenReview in authentication")
    audiences = [str(a) for a in spec.get("audiences") or []] or None
    review_status: Obj = {"user": {}}
    try:
        response = authenticator.authenticate_token(token, audiences)
    except InvalidTokenError as error:
        review_status["error"] = str(error)
    else:
        user = response.user
        review_status = {"authenticated": True,
                         "user": {"username": user.name, "uid": user.uid,
                                  "groups": list(user.groups),
                                  **({"extra": dict(response.extra)} if response.extra
                                     else {})}}
        if response.audiences:
            review_status["audiences"] = list(response.audiences)
    meta = body.get("metadata") or {}
    return req.json_response({
        "kind": "TokenReview", "apiVersion": AUTHENTICATION_V1,
        "metadata": {k: meta[k] for k in ("name", "generateName") if meta.get(k)},
        "spec": spec, "status": review_status}, code=201)


# --- issuer discovery --------------------------------------------------------------------

def discovery_routes(authority: TokenAuthority, *, external_address: str,
                     jwks_uri: str | None = None) -> list[web.RouteDef]:
    """The OIDC discovery document and the JWKS, built once (kube caches them too)."""
    try:
        configuration = authority.openid_configuration(jwks_uri=jwks_uri,
                                                       external_address=external_address)
    except ValueError:
        configuration = None  # a non-https issuer: kube then serves no discovery either
    keys = authority.jwks()
    headers = {"Cache-Control": "public, max-age=3600"}

    async def openid_configuration(request: web.Request) -> web.Response:
        if configuration is None:
            raise status.StatusError(404, "NotFound",
                                     "the server could not find the requested resource")
        return req.json_response(configuration, headers=headers)

    async def jwks(request: web.Request) -> web.Response:
        response = req.json_response(keys, headers=headers)
        response.content_type = "application/jwk-set+json"
        return response

    return [web.get(OPENID_CONFIG_PATH, openid_configuration), web.get(JWKS_PATH, jwks)]
