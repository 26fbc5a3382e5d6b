"""Access reviews and SelfSubjectReview: "may X do Y", "what may I do", "who am I".

Kubernetes' ``pkg/registry/authorization/*`` and ``pkg/registry/authentication/
selfsubjectreview`` REST storages: create-only, nothing stored, the answer computed from
the apiserver's own authorizer chain, so a review says exactly what a request would get.

- ``selfsubjectaccessreviews`` (``kubectl auth can-i``): the requesting user.
- ``subjectaccessreviews`` / ``namespaces/{ns}/localsubjectaccessreviews``: the user and
  groups in the spec (a local review only inside its namespace).
- ``selfsubjectrulesreviews`` (``kubectl auth can-i --list``): every rule the requesting
  user holds in ``spec.namespace`` (the union rule resolver; a node's rules cannot be
  enumerated, so that answer is ``incomplete``).
- ``authentication.k8s.io`` ``selfsubjectreviews`` (``kubectl auth whoami``): the user
  the request was authenticated (or impersonated) as.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from apiserver import status
from apiserver.auth.authn import USER, UserInfo
from apiserver.auth.authorization import Authorization
from apiserver.auth.authorizer import Attributes, Decision, go_quote
from apiserver.auth.filters import EXTRA
from apiserver.auth.rbac import go_value
from apiserver.handlers import request as req
from apiserver.handlers.request import RequestInfo

Obj = dict[str, Any]

AUTHORIZATION_V1 = "authorization.k8s.io/v1"
AUTHENTICATION_V1 = "authentication.k8s.io/v1"


async def _read(request: web.Request, api_version: str, kind: str) -> Obj:
    body = await req.read_object(request)
    body_version, body_kind = body.get("apiVersion"), body.get("kind")
    if body_version and body_version != api_version:
        raise status.bad_request(f"the API version in the data ({body_version}) does not "
                                 f"match the expected API version ({api_version})")
    if body_kind and body_kind != kind:
        raise status.bad_request(f"the kind in the data ({body_kind}) does not match the "
                                 f"expected kind ({kind})")
    for key in ("metadata", "spec"):
        if not isinstance(body.get(key) or {}, dict):
            raise status.bad_request(f"{kind}.{key} must be an object")
    return body


def _user(request: web.Request) -> UserInfo:
    user = request.get(USER)
    if user is None:
        raise status.bad_request("no user present on request")
    return user


def _invalid_value(field: str, value: Any, detail: str) -> dict[str, str]:
    """A field.Invalid cause with the value printed as Go's field errors do (a nil
    pointer is ``"null"``, NonResourceAttributes is its ``%#v``)."""
    if value is None:
        shown = '"null"'
    elif isinstance(value, dict):
        path, verb = go_quote(str(value.get("path") or "")), go_quote(str(value.get("verb") or ""))
        shown = f"authorization.NonResourceAttributes{{Path:{path}, Verb:{verb}}}"
    else:
        shown = go_value(value)
    return status.field_cause(field, f"Invalid value: {shown}: {detail}")


def spec_causes(spec: Obj, *, self_review: bool) -> list[dict[str, str]]:
    """kube ``ValidateSubjectAccessReviewSpec`` (``self_review``: the Self variant,
    which has no user or groups to check)."""
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    causes = []
    if resource is not None and non_resource is not None:
        causes.append(_invalid_value("spec.nonResourceAttributes", non_resource,
                                     "cannot be specified in combination with "
                                     "resourceAttributes"))
    if resource is None and non_resource is None:
        causes.append(_invalid_value("spec.resourceAttributes", None,
                                     "exactly one of nonResourceAttributes or "
                                     "resourceAttributes must be specified"))
    if not self_review and not spec.get("user") and not spec.get("groups"):
        causes.append(_invalid_value("spec.user", spec.get("user") or "",
                                     "at least one of user or group must be specified"))
    for key, value in (("resourceAttributes", resource), ("nonResourceAttributes", non_resource)):
        if value is not None and not isinstance(value, dict):
            causes.append(_invalid_value(f"spec.{key}", value, "must be an object"))
    return causes


def review_attributes(user: UserInfo, spec: Obj) -> Attributes:
    """kube ``ResourceAttributesFrom`` / ``NonResourceAttributesFrom``."""
    resource = spec.get("resourceAttributes")
    if isinstance(resource, dict):
        return Attributes(user=user, verb=str(resource.get("verb") or ""),
                          api_group=str(resource.get("group") or ""),
                          api_version=str(resource.get("version") or ""),
                          resource=str(resource.get("resource") or ""),
                          subresource=str(resource.get("subresource") or ""),
                          namespace=str(resource.get("namespace") or ""),
                          name=str(resource.get("name") or ""))
    non_resource = spec.get("nonResourceAttributes") or {}
    return Attributes(user=user, verb=str(non_resource.get("verb") or ""),
                      resource_request=False, path=str(non_resource.get("path") or ""))


def review_status(authorization: Authorization, attrs: Attributes) -> Obj:
    """A ``SubjectAccessReviewStatus``: ``allowed`` always, the rest when set."""
    decision, reason = authorization.authorize(attrs)
    out: Obj = {"allowed": decision is Decision.ALLOW}
    if decision is Decision.DENY:
        out["denied"] = True
    if reason:
        out["reason"] = reason
    return out


def _answer(body: Obj, api_version: str, kind: str, answer: Obj) -> web.Response:
    return req.json_response({"kind": kind, "apiVersion": api_version,
                              "metadata": body.get("metadata") or {},
                              "spec": body.get("spec") or {}, "status": answer}, code=201)


async def self_subject_access_review(authorization: Authorization, request: web.Request,
                                     info: RequestInfo) -> web.Response:
    kind = "SelfSubjectAccessReview"
    body = await _read(request, AUTHORIZATION_V1, kind)
    spec = body.get("spec") or {}
    causes = spec_causes(spec, self_review=True)
    if causes:
        raise status.invalid(kind, "authorization.k8s.io", "", causes)
    attrs = review_attributes(_user(request), spec)
    return _answer(body, AUTHORIZATION_V1, kind, review_status(authorization, attrs))


def _subject(spec: Obj) -> UserInfo:
    groups = spec.get("groups") or []
    return UserInfo(name=str(spec.get("user") or ""),
                    groups=tuple(str(g) for g in groups if isinstance(g, str)),
                    uid=str(spec.get("uid") or ""))


async def subject_access_review(authorization: Authorization, request: web.Request,
                                info: RequestInfo) -> web.Response:
    kind = "SubjectAccessReview"
    body = await _read(request, AUTHORIZATION_V1, kind)
    spec = body.get("spec") or {}
    causes = spec_causes(spec, self_review=False)
    if causes:
        raise status.invalid(kind, "authorization.k8s.io", "", causes)
    attrs = review_attributes(_subject(spec), spec)
    return _answer(body, AUTHORIZATION_V1, kind, review_status(authorization, attrs))


async def local_subject_access_review(authorization: Authorization, request: web.Request,
                                      info: RequestInfo) -> web.Response:
    kind = "LocalSubjectAccessReview"
    namespace = info.namespace or ""
    body = await _read(request, AUTHORIZATION_V1, kind)
    spec = body.get("spec") or {}
    meta = body.setdefault("metadata", {})
    if meta.get("namespace") and meta["namespace"] != namespace:
        raise status.bad_request("the namespace of the provided object does not match the "
                                 "namespace sent on the request")
    meta["namespace"] = namespace
    causes = spec_causes(spec, self_review=False)
    if spec.get("nonResourceAttributes") is not None:
        causes.append(_invalid_value("spec.nonResourceAttributes",
                                     spec["nonResourceAttributes"],
                                     "disallowed on this kind of request"))
    if causes:
        raise status.invalid(kind, "authorization.k8s.io", "", causes)
    resource = spec.get("resourceAttributes") or {}
    if (resource.get("namespace") or "") != namespace:
        raise status.bad_request(f"spec.resourceAttributes.namespace must match namespace: "
                                 f"{namespace}")
    attrs = review_attributes(_subject(spec), spec)
    return _answer(body, AUTHORIZATION_V1, kind, review_status(authorization, attrs))


async def self_subject_rules_review(authorization: Authorization, request: web.Request,
                                    info: RequestInfo) -> web.Response:
    kind = "SelfSubjectRulesReview"
    body = await _read(request, AUTHORIZATION_V1, kind)
    namespace = (body.get("spec") or {}).get("namespace")
    if not namespace or not isinstance(namespace, str):
        raise status.bad_request("no namespace on request")
    rules = authorization.rules_for(_user(request), namespace)
    answer: Obj = {"resourceRules": rules.resource_rules,
                   "nonResourceRules": rules.non_resource_rules,
                   "incomplete": rules.incomplete}
    if rules.evaluation_error:
        answer["evaluationError"] = rules.evaluation_error
    return _answer(body, AUTHORIZATION_V1, kind, answer)


async def self_subject_review(request: web.Request, info: RequestInfo) -> web.Response:
    """``kubectl auth whoami``: the user as authenticated (or impersonated)."""
    kind = "SelfSubjectReview"
    body = await _read(request, AUTHENTICATION_V1, kind)
    user = _user(request)
    user_info: Obj = {"username": user.name}
    if user.uid:
        user_info["uid"] = user.uid
    user_info["groups"] = list(user.groups)
    extra = request.get(EXTRA)
    if extra:
        user_info["extra"] = extra
    meta = {"creationTimestamp": None, **(body.get("metadata") or {})}
    return req.json_response({"kind": kind, "apiVersion": AUTHENTICATION_V1, "metadata": meta,
                              "status": {"userInfo": user_info}}, code=201)


def review_routes(authorization: Authorization
                  ) -> dict[tuple[str, str, str | None, str], Any]:
    """The ``resource_routes`` of :class:`~apiserver.handlers.resources.ResourceHandler`
    serving the reviews."""
    group = "authorization.k8s.io"
    return {
        (group, "selfsubjectaccessreviews", None, "create"):
            partial(self_subject_access_review, authorization),
        (group, "subjectaccessreviews", None, "create"):
            partial(subject_access_review, authorization),
        (group, "localsubjectaccessreviews", None, "create"):
            partial(local_subject_access_review, authorization),
        (group, "selfsubjectrulesreviews", None, "create"):
            partial(self_subject_rules_review, authorization),
        ("authentication.k8s.io", "selfsubjectreviews", None, "create"): self_subject_review,
    }
