"""RBAC: Roles, ClusterRoles and their bindings decide who may do what, as in Kubernetes.

Why: this is kube's RBAC authorizer (``plugin/pkg/auth/authorizer/rbac``), its rule
resolver and escalation check (``pkg/registry/rbac/validation``), the rule matching of
``pkg/apis/rbac/v1/evaluation_helpers.go``, the object validation of
``pkg/apis/rbac/validation`` and the ClusterRole aggregation controller's rule union,
written again over plain JSON objects so that a Kubernetes user meets the same answers
and the same texts.

Shape:
- :class:`RbacIndex` holds the four kinds in memory and indexes bindings by subject, so a
  decision reads only the bindings naming the user (or one of their groups), not all of
  them. Feed it from informer events: ``upsert(obj)`` on add/update, ``delete(obj)`` on
  delete, ``replace(objs)`` after a relist. It also answers kube's four lister questions
  (:class:`RbacSource`), so any other source shaped like kube's listers works too, only
  slower (every binding of the namespace is read, as kube does).
- :class:`RBACAuthorizer` answers ``ALLOW`` or ``NO_OPINION`` (never ``DENY``), with kube's
  reasons: ``RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "z"`` and,
  on a refusal with broken references, ``RBAC: clusterrole.rbac.authorization.k8s.io "y"
  not found``. It also lists a user's rules (SelfSubjectRulesReview) and checks that a
  role or binding being written grants nothing its author lacks (escalation prevention;
  :func:`check_role_write` / :func:`check_binding_write` are kube's storage guards whole).
- ClusterRole aggregation (what ``admin``, ``edit``, ``view`` hold) is in
  :mod:`apiclient.rbac`, shared with the controller manager's aggregation loop.
- ``validate_*`` return Kubernetes field causes ``{"reason", "message", "field"}`` for a
  422; :func:`default_binding` fills ``apiGroup`` defaults first, as the v1 defaulting does.

Invariants:
- Rules are matched exactly like kube: ``*`` verbs / groups / resources; ``*/sub`` matches
  any resource's ``sub``; ``pods/*`` is NOT a wildcard (it matches only a subresource
  literally named ``*``); ``resourceNames`` restrict only when non-empty (so a rule with
  names never allows ``list``/``create``, which carry no name); a ``nonResourceURLs``
  entry ending in ``*`` is a prefix match. Unknown verbs are allowed in rules.
- A ServiceAccount subject is the user ``system:serviceaccount:<ns>:<name>``; in a
  RoleBinding an empty subject namespace means the binding's namespace (kube's
  ``appliesToUser``); in a ClusterRoleBinding it matches nobody (and fails validation).
- A RoleBinding to a ClusterRole grants that role's rules in the binding's namespace only.
- The index is not thread-safe: feed and query it from the apiserver's event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from apiclient.selectors import SelectorError, label_selector_from_spec
from apiserver.admission.validation import dns1123_subdomain_errors, metadata_causes
from apiserver.auth.authn import UserInfo
from apiserver.auth.authorizer import (
    PRIVILEGED_GROUP,
    Attributes,
    Authorizer,
    Decision,
    Result,
    aggregate_error_text,
    forbidden_status_message,
    go_quote,
    go_quote_list,
)
from apiserver.status import field_cause

Obj = Mapping[str, Any]
Rule = dict[str, list[str]]
Cause = dict[str, str]

RBAC_GROUP = "rbac.authorization.k8s.io"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
ROLE, CLUSTER_ROLE = "Role", "ClusterRole"
ROLE_BINDING, CLUSTER_ROLE_BINDING = "RoleBinding", "ClusterRoleBinding"
USER, GROUP, SERVICE_ACCOUNT = "User", "Group", "ServiceAccount"
KINDS = (ROLE, CLUSTER_ROLE, ROLE_BINDING, CLUSTER_ROLE_BINDING)

_RULE_FIELDS = ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs")

# The rules that make a user "cluster-admin" (clusterrole policybased storage fullAuthority).
FULL_AUTHORITY: tuple[Rule, ...] = (
    {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
    {"verbs": ["*"], "nonResourceURLs": ["*"]},
)
AGGREGATION_RULE_FORBIDDEN = "must have cluster-admin privileges to use the aggregationRule"


# --- rule matching (pkg/apis/rbac/v1/evaluation_helpers.go) --------------------------------

def _strings(rule: Obj, key: str) -> list[str]:
    values = rule.get(key)
    return list(values) if isinstance(values, list | tuple) else []


def verb_matches(rule: Obj, verb: str) -> bool:
    verbs = _strings(rule, "verbs")
    return "*" in verbs or verb in verbs


def api_group_matches(rule: Obj, group: str) -> bool:
    groups = _strings(rule, "apiGroups")
    return "*" in groups or group in groups


def resource_matches(rule: Obj, combined: str, subresource: str) -> bool:
    """``combined`` is ``resource`` or ``resource/subresource``."""
    for candidate in _strings(rule, "resources"):
        if candidate in ("*", combined):
            return True
        if subresource and candidate == f"*/{subresource}":
            return True
    return False


def resource_name_matches(rule: Obj, name: str) -> bool:
    names = _strings(rule, "resourceNames")
    return not names or name in names


def non_resource_url_matches(rule: Obj, path: str) -> bool:
    for url in _strings(rule, "nonResourceURLs"):
        if url in ("*", path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(attrs: Attributes, rule: Obj) -> bool:
    """kube ``RuleAllows``: does this one PolicyRule allow the request?"""
    if not verb_matches(rule, attrs.verb):
        return False
    if not attrs.resource_request:
        return non_resource_url_matches(rule, attrs.path)
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    return (api_group_matches(rule, attrs.api_group)
            and resource_matches(rule, combined, attrs.subresource)
            and resource_name_matches(rule, attrs.name))


def rules_allow(attrs: Attributes, rules: Iterable[Obj]) -> bool:
    return any(rule_allows(attrs, rule) for rule in rules)


# --- subjects -------------------------------------------------------------------------------

def service_account_username(namespace: str, name: str) -> str:
    """The user name a ServiceAccount authenticates as."""
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def _subject_key(subject: Any, binding_namespace: str) -> tuple[str, str] | None:
    """("user", name) or ("group", name) this subject stands for; None if it matches nobody."""
    if not isinstance(subject, Mapping):
        return None
    kind, name = subject.get("kind"), str(subject.get("name") or "")
    if kind == USER:
        return "user", name
    if kind == GROUP:
        return "group", name
    if kind == SERVICE_ACCOUNT:
        namespace = subject.get("namespace") or binding_namespace
        return ("user", service_account_username(namespace, name)) if namespace else None
    return None


def _user_keys(user: UserInfo) -> list[tuple[str, str]]:
    return [("user", user.name), *(("group", group) for group in user.groups)]


def subject_applies(user: UserInfo, subject: Obj, binding_namespace: str) -> bool:
    """kube ``appliesToUser`` (``binding_namespace`` is "" for a ClusterRoleBinding)."""
    key = _subject_key(subject, binding_namespace)
    return key is not None and key in _user_keys(user)


def _first_applicable(user: UserInfo, binding: Obj, namespace: str) -> Obj | None:
    for subject in binding.get("subjects") or ():
        if subject_applies(user, subject, namespace):
            return subject
    return None


def _describe_subject(subject: Obj, binding_namespace: str) -> str:
    kind, name = str(subject.get("kind") or ""), str(subject.get("name") or "")
    if kind == SERVICE_ACCOUNT:
        namespace = subject.get("namespace") or binding_namespace
        return f"{kind} {go_quote(f'{name}/{namespace}')}"
    return f"{kind} {go_quote(name)}"


def describe_binding(binding: Obj, subject: Obj, binding_namespace: str) -> str:
    """kube's rule source text: ``RoleBinding "name/ns" of ClusterRole "view" to User "x"``
    (``binding_namespace`` is "" for a ClusterRoleBinding)."""
    meta = binding.get("metadata") or {}
    ref = binding.get("roleRef") or {}
    ref_text = f"{ref.get('kind', '')} {go_quote(str(ref.get('name') or ''))}"
    namespace = binding_namespace
    if not namespace:
        return (f"ClusterRoleBinding {go_quote(str(meta.get('name') or ''))} of {ref_text} "
                f"to {_describe_subject(subject, '')}")
    return (f"RoleBinding {go_quote(str(meta.get('name') or '') + '/' + namespace)} of "
            f"{ref_text} to {_describe_subject(subject, namespace)}")


# --- the source of RBAC objects ---------------------------------------------------------------

class RbacSource(Protocol):
    """kube's four RBAC listers; objects are plain dicts as stored."""

    def get_role(self, namespace: str, name: str) -> Obj | None: ...

    def get_cluster_role(self, name: str) -> Obj | None: ...

    def list_role_bindings(self, namespace: str) -> Iterable[Obj]: ...

    def list_cluster_role_bindings(self) -> Iterable[Obj]: ...


@runtime_checkable
class SubjectIndexedSource(Protocol):
    """A source that can find the bindings naming a user or their groups directly."""

    def cluster_role_bindings_for(self, user: UserInfo) -> Iterable[Obj]: ...

    def role_bindings_for(self, user: UserInfo, namespace: str) -> Iterable[Obj]: ...


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _namespace(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


class RbacIndex:
    """Roles, ClusterRoles and bindings in memory, bindings indexed by subject.

    Feed with ``upsert`` / ``delete`` (one object, any of the four kinds; pass ``kind=``
    when the object lacks it, as list items do) or ``replace`` (everything, after a
    relist). Lookups cost one dictionary read per user name and group.
    """

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self._roles: dict[tuple[str, str], Obj] = {}
        self._cluster_roles: dict[str, Obj] = {}
        self._role_bindings: dict[str, dict[str, Obj]] = {}  # namespace -> name -> obj
        self._cluster_role_bindings: dict[str, Obj] = {}
        # ("user"|"group", name) -> binding names; (namespace, "user"|"group", name) -> names
        self._crb_by_subject: dict[tuple[str, str], set[str]] = {}
        self._rb_by_subject: dict[tuple[str, str, str], set[str]] = {}

    # --- feeding -------------------------------------------------------------------------

    def upsert(self, obj: Obj, *, kind: str | None = None) -> None:
        kind = _kind_of(obj, kind)
        name, namespace = _name(obj), _namespace(obj)
        if kind == ROLE:
            self._roles[(namespace, name)] = obj
        elif kind == CLUSTER_ROLE:
            self._cluster_roles[name] = obj
        elif kind == ROLE_BINDING:
            self._remove_role_binding(namespace, name)
            self._role_bindings.setdefault(namespace, {})[name] = obj
            for key in _binding_keys(obj, namespace):
                self._rb_by_subject.setdefault((namespace, *key), set()).add(name)
        else:
            self._remove_cluster_role_binding(name)
            self._cluster_role_bindings[name] = obj
            for key in _binding_keys(obj, ""):
                self._crb_by_subject.setdefault(key, set()).add(name)

    def delete(self, obj: Obj, *, kind: str | None = None) -> None:
        kind = _kind_of(obj, kind)
        name, namespace = _name(obj), _namespace(obj)
        if kind == ROLE:
            self._roles.pop((namespace, name), None)
        elif kind == CLUSTER_ROLE:
            self._cluster_roles.pop(name, None)
        elif kind == ROLE_BINDING:
            self._remove_role_binding(namespace, name)
        else:
            self._remove_cluster_role_binding(name)

    def replace(self, objs: Iterable[Obj]) -> None:
        """Forget everything and load ``objs`` (each carrying its ``kind``)."""
        self._clear()
        for obj in objs:
            self.upsert(obj)

    def _remove_role_binding(self, namespace: str, name: str) -> None:
        old = self._role_bindings.get(namespace, {}).pop(name, None)
        if old is None:
            return
        for key in _binding_keys(old, namespace):
            _discard(self._rb_by_subject, (namespace, *key), name)

    def _remove_cluster_role_binding(self, name: str) -> None:
        old = self._cluster_role_bindings.pop(name, None)
        if old is None:
            return
        for key in _binding_keys(old, ""):
            _discard(self._crb_by_subject, key, name)

    # --- kube's listers ----------------------------------------------------------------

    def get_role(self, namespace: str, name: str) -> Obj | None:
        return self._roles.get((namespace, name))

    def get_cluster_role(self, name: str) -> Obj | None:
        return self._cluster_roles.get(name)

    def list_role_bindings(self, namespace: str) -> list[Obj]:
        return list(self._role_bindings.get(namespace, {}).values())

    def list_cluster_role_bindings(self) -> list[Obj]:
        return list(self._cluster_role_bindings.values())

    def list_cluster_roles(self) -> list[Obj]:
        return list(self._cluster_roles.values())

    # --- by subject --------------------------------------------------------------------

    def cluster_role_bindings_for(self, user: UserInfo) -> list[Obj]:
        names: set[str] = set()
        for key in _user_keys(user):
            names |= self._crb_by_subject.get(key, set())
        return [self._cluster_role_bindings[name] for name in sorted(names)]

    def role_bindings_for(self, user: UserInfo, namespace: str) -> list[Obj]:
        names: set[str] = set()
        for key in _user_keys(user):
            names |= self._rb_by_subject.get((namespace, *key), set())
        in_namespace = self._role_bindings.get(namespace, {})
        return [in_namespace[name] for name in sorted(names)]


def _kind_of(obj: Obj, kind: str | None) -> str:
    kind = kind or str(obj.get("kind") or "")
    if kind not in KINDS:
        shown = kind or "an object without kind"
        raise ValueError(f"RbacIndex holds {', '.join(KINDS)}, not {shown}")
    return kind


def _binding_keys(binding: Obj, namespace: str) -> set[tuple[str, str]]:
    keys = (_subject_key(subject, namespace) for subject in binding.get("subjects") or ())
    return {key for key in keys if key is not None}


def _discard(index: dict[Any, set[str]], key: Any, name: str) -> None:
    names = index.get(key)
    if names is not None:
        names.discard(name)
        if not names:
            del index[key]


# --- resolving rules (pkg/registry/rbac/validation/rule.go) ---------------------------------

class RoleRefError(LookupError):
    """A binding's roleRef cannot be resolved. ``str()`` is kube's text for the authorizer
    (``clusterrole.rbac.authorization.k8s.io "x" not found``); ``plural`` and ``name`` let
    the REST layer answer 404 ``clusterroles.rbac.authorization.k8s.io "x" not found``."""

    def __init__(self, message: str, *, plural: str = "", name: str = "") -> None:
        super().__init__(message)
        self.plural = plural
        self.name = name


def _role_ref(binding: Obj) -> Mapping[str, Any]:
    ref = binding.get("roleRef")
    return ref if isinstance(ref, Mapping) else {}


class Visit(NamedTuple):
    """One step of rule resolution: a rule of ``binding``, or the ``error`` resolving it.
    ``namespace`` is the binding's namespace, "" for a ClusterRoleBinding."""

    binding: Obj
    namespace: str
    rule: Obj | None
    error: str | None


class RulesFor(NamedTuple):
    """A user's rules in a namespace (SelfSubjectRulesReview status).

    ``incomplete`` is False for RBAC, as in kube (its lists are always complete); a
    broken reference shows in ``evaluation_error`` instead.
    """

    resource_rules: list[Rule]
    non_resource_rules: list[Rule]
    incomplete: bool
    evaluation_error: str


class RBACAuthorizer:
    """kube's RBAC authorizer and rule resolver over an :class:`RbacSource`."""

    def __init__(self, source: RbacSource) -> None:
        self.source = source
        # Asked once: a runtime-checkable Protocol isinstance costs microseconds per call.
        self._indexed = isinstance(source, SubjectIndexedSource)

    # --- resolving ---------------------------------------------------------------------

    def role_ref_rules(self, role_ref: Mapping[str, Any], binding_namespace: str) -> list[Obj]:
        """kube ``GetRoleReferenceRules``; raises :class:`RoleRefError`."""
        kind, name = role_ref.get("kind"), str(role_ref.get("name") or "")
        if kind == ROLE:
            role = self.source.get_role(binding_namespace, name)
            if role is None:
                raise RoleRefError(f'role.{RBAC_GROUP} {go_quote(name)} not found',
                                   plural="roles", name=name)
        elif kind == CLUSTER_ROLE:
            role = self.source.get_cluster_role(name)
            if role is None:
                raise RoleRefError(f'clusterrole.{RBAC_GROUP} {go_quote(name)} not found',
                                   plural="clusterroles", name=name)
        else:
            raise RoleRefError(f"unsupported role reference kind: {go_quote(str(kind or ''))}")
        return [rule for rule in role.get("rules") or () if isinstance(rule, Mapping)]

    def _bindings(self, user: UserInfo, namespace: str) -> Iterator[tuple[Obj, str]]:
        """(binding, binding namespace) that name the user: cluster-wide first."""
        if self._indexed:
            yield from ((b, "") for b in self.source.cluster_role_bindings_for(user))
            if namespace:
                yield from ((b, namespace) for b in self.source.role_bindings_for(user, namespace))
            return
        for binding in self.source.list_cluster_role_bindings():
            if _first_applicable(user, binding, "") is not None:
                yield binding, ""
        if namespace:
            for binding in self.source.list_role_bindings(namespace):
                if _first_applicable(user, binding, namespace) is not None:
                    yield binding, namespace

    def visit_rules(self, user: UserInfo, namespace: str) -> Iterator[Visit]:
        """kube ``VisitRulesFor``: one :class:`Visit` per rule, or per unresolvable
        roleRef (with ``error``), cluster-wide bindings first. Stop iterating to
        short-circuit."""
        for binding, binding_namespace in self._bindings(user, namespace):
            try:
                rules = self.role_ref_rules(_role_ref(binding), binding_namespace)
            except RoleRefError as error:
                yield Visit(binding, binding_namespace, None, str(error))
                continue
            for rule in rules:
                yield Visit(binding, binding_namespace, rule, None)

    # --- authorizing -------------------------------------------------------------------

    def authorize(self, attrs: Attributes) -> Result:
        errors: list[str] = []
        for visit in self.visit_rules(attrs.user, attrs.namespace):
            if visit.rule is not None and rule_allows(attrs, visit.rule):
                subject = _first_applicable(attrs.user, visit.binding, visit.namespace) or {}
                source = describe_binding(visit.binding, subject, visit.namespace)
                return Decision.ALLOW, f"RBAC: allowed by {source}"
            if visit.error is not None:
                errors.append(visit.error)
        reason = f"RBAC: {aggregate_error_text(errors)}" if errors else ""
        return Decision.NO_OPINION, reason

    def rules_for(self, user: UserInfo, namespace: str) -> RulesFor:
        """Everything the user may do in ``namespace`` (``kubectl auth can-i --list``)."""
        resource_rules: list[Rule] = []
        non_resource_rules: list[Rule] = []
        errors: list[str] = []
        for _binding, _ns, rule, error in self.visit_rules(user, namespace):
            if rule is None:
                errors.append(str(error))
                continue
            if _strings(rule, "resources"):
                resource_rules.append(_compact_rule(rule, ("verbs", "apiGroups", "resources",
                                                           "resourceNames")))
            if _strings(rule, "nonResourceURLs"):
                non_resource_rules.append(_compact_rule(rule, ("verbs", "nonResourceURLs")))
        return RulesFor(resource_rules, non_resource_rules, False,
                        aggregate_error_text(errors) if errors else "")

    def owner_rules(self, user: UserInfo, namespace: str) -> tuple[list[Obj], list[str]]:
        """kube ``RulesFor``: every rule the user holds, and the resolution errors."""
        rules: list[Obj] = []
        errors: list[str] = []
        for _binding, _ns, rule, error in self.visit_rules(user, namespace):
            if rule is not None:
                rules.append(rule)
            if error is not None:
                errors.append(error)
        return rules, errors

    def confirm_no_escalation(self, user: UserInfo, namespace: str,
                              rules: Sequence[Obj]) -> str | None:
        """kube ``ConfirmNoEscalation``: None when the user already holds every rule in
        ``rules`` in ``namespace`` ("" for cluster scope), else kube's error text."""
        owner, errors = self.owner_rules(user, namespace)
        covered, missing = covers(owner, rules)
        if covered:
            return None
        return escalation_message(user, missing, resolution_errors=errors)


def _compact_rule(rule: Obj, fields: Sequence[str]) -> Rule:
    return {key: _strings(rule, key) for key in fields if key == "verbs" or _strings(rule, key)}


# --- escalation prevention (component-helpers rbac/validation, policy_compact.go) ------------

def breakdown_rule(rule: Obj) -> list[Rule]:
    """One rule per (group, resource, verb[, name]) and per (url, verb)."""
    verbs = _strings(rule, "verbs")
    names = _strings(rule, "resourceNames")
    out: list[Rule] = []
    for group in _strings(rule, "apiGroups"):
        for resource in _strings(rule, "resources"):
            for verb in verbs:
                base: Rule = {"verbs": [verb], "apiGroups": [group], "resources": [resource]}
                out += [{**base, "resourceNames": [name]} for name in names] if names else [base]
    for url in _strings(rule, "nonResourceURLs"):
        out += [{"verbs": [verb], "nonResourceURLs": [url]} for verb in verbs]
    return out


def _resources_cover(owner: list[str], wanted: list[str]) -> bool:
    if "*" in owner:
        return True
    for path in wanted:
        if path in owner:
            continue
        if "/" not in path or f"*/{path.split('/', 1)[1]}" not in owner:
            return False
    return True


def _url_covers(owner: str, path: str) -> bool:
    return owner == path or (owner.endswith("*") and path.startswith(owner.rstrip("*")))


def _rule_covers(owner: Obj, sub: Obj) -> bool:
    owner_verbs, owner_groups = _strings(owner, "verbs"), _strings(owner, "apiGroups")
    owner_names, sub_names = _strings(owner, "resourceNames"), _strings(sub, "resourceNames")
    owner_urls = _strings(owner, "nonResourceURLs")
    return (("*" in owner_verbs or set(_strings(sub, "verbs")) <= set(owner_verbs))
            and ("*" in owner_groups or set(_strings(sub, "apiGroups")) <= set(owner_groups))
            and _resources_cover(_strings(owner, "resources"), _strings(sub, "resources"))
            and all(any(_url_covers(o, p) for o in owner_urls)
                    for p in _strings(sub, "nonResourceURLs"))
            and (not owner_names or (bool(sub_names) and set(sub_names) <= set(owner_names))))


def covers(owner_rules: Sequence[Obj], requested_rules: Sequence[Obj]) -> tuple[bool, list[Rule]]:
    """kube ``Covers``: do the owner's rules allow everything requested? The uncovered
    part comes back broken down to one verb/resource/name (or url) per rule."""
    uncovered = [sub for rule in requested_rules for sub in breakdown_rule(rule)
                 if not any(_rule_covers(owner, sub) for owner in owner_rules)]
    return not uncovered, uncovered


def compact_rules(rules: Sequence[Obj]) -> list[Rule]:
    """kube ``CompactRules``: rules of one group, one resource (and at most one name) that
    differ only by verb become one rule with all the verbs."""
    compacted: list[Rule] = []
    simple: dict[tuple[str, str, str | None], Rule] = {}
    for rule in rules:
        key = _simple_key(rule)
        if key is None:
            compacted.append({k: _strings(rule, k) for k in _RULE_FIELDS if _strings(rule, k)})
        elif key in simple:
            simple[key]["verbs"] = simple[key]["verbs"] + _strings(rule, "verbs")
        else:
            simple[key] = {k: _strings(rule, k) for k in _RULE_FIELDS if _strings(rule, k)}
    return compacted + list(simple.values())


def _simple_key(rule: Obj) -> tuple[str, str, str | None] | None:
    groups, resources = _strings(rule, "apiGroups"), _strings(rule, "resources")
    names = _strings(rule, "resourceNames")
    if len(names) > 1 or _strings(rule, "nonResourceURLs"):
        return None
    if len(groups) != 1 or len(resources) != 1:
        return None
    return groups[0], resources[0], names[0] if names else None


def compact_string(rule: Obj) -> str:
    """kube ``CompactString``: ``{APIGroups:[""], Resources:["pods"], Verbs:["get"]}``."""
    labels = (("apiGroups", "APIGroups"), ("resources", "Resources"),
              ("nonResourceURLs", "NonResourceURLs"), ("resourceNames", "ResourceNames"),
              ("verbs", "Verbs"))
    parts = [f"{label}:{go_quote_list(_strings(rule, key))}"
             for key, label in labels if _strings(rule, key)]
    return "{" + ", ".join(parts) + "}"


def escalation_message(user: UserInfo, missing: Sequence[Obj], *,
                       resolution_errors: Sequence[str] = ()) -> str:
    """kube ``ConfirmNoEscalation``'s error text for the rules the user lacks."""
    descriptions = sorted({compact_string(rule) for rule in compact_rules(missing)})
    message = (f"user {go_quote(user.name)} (groups={go_quote_list(user.groups)}) is "
               "attempting to grant RBAC permissions not currently held:\n"
               + "\n".join(descriptions))
    if resolution_errors:
        message += f"; resolution errors: [{aggregate_error_text(list(resolution_errors))}]"
    return message


def escalation_allowed(user: UserInfo) -> bool:
    """kube ``EscalationAllowed``: ``system:masters`` may write any role or binding."""
    return PRIVILEGED_GROUP in user.groups


def escalate_attributes(user: UserInfo, *, resource: str, name: str,
                        namespace: str = "") -> Attributes:
    """The check kube ``RoleEscalationAuthorized`` makes: may the user ``escalate`` this
    role (``resource`` is ``roles`` or ``clusterroles``)?"""
    return Attributes(user=user, verb="escalate", api_group=RBAC_GROUP, api_version="*",
                      resource=resource, name=name, namespace=namespace)


def bind_attributes(user: UserInfo, role_ref: Mapping[str, Any],
                    binding_namespace: str) -> Attributes | None:
    """The check kube ``BindingAuthorized`` makes: may the user ``bind`` the referenced
    role here? None for a roleRef kind that cannot be bound."""
    resource = {ROLE: "roles", CLUSTER_ROLE: "clusterroles"}.get(str(role_ref.get("kind")))
    if resource is None:
        return None
    return Attributes(user=user, verb="bind", api_group=str(role_ref.get("apiGroup") or ""),
                      resource=resource, name=str(role_ref.get("name") or ""),
                      namespace=binding_namespace)


def has_aggregation_rule(role: Obj | None) -> bool:
    rule = (role or {}).get("aggregationRule")
    return isinstance(rule, Mapping) and bool(rule.get("clusterRoleSelectors"))


def escalation_forbidden(resource: str, name: str, message: str) -> str:
    """The 403 message kube's RBAC storage sends (``roles.rbac.authorization.k8s.io "x" is
    forbidden: user "alice" (groups=[...]) is attempting to grant ...``)."""
    return forbidden_status_message(RBAC_GROUP, resource, name, message)


def check_role_write(authorizer: Authorizer, rbac: RBACAuthorizer, user: UserInfo, *,
                     resource: str, namespace: str, name: str, rules: Sequence[Obj],
                     aggregated: bool = False) -> str | None:
    """kube's RBAC storage guard for creating or updating a Role (``resource="roles"``)
    or ClusterRole: None when the write may proceed, else the 403 message.

    ``authorizer`` is the apiserver's whole chain (for the ``escalate`` check);
    ``aggregated`` is True when the new or the old ClusterRole has an aggregationRule,
    which only holders of full authority may set or change.
    """
    if escalation_allowed(user):
        return None
    escalate = escalate_attributes(user, resource=resource, name=name, namespace=namespace)
    if authorizer.authorize(escalate)[0] is Decision.ALLOW:
        return None
    problem = rbac.confirm_no_escalation(user, namespace, rules)
    if problem is not None:
        return escalation_forbidden(resource, name, problem)
    if aggregated and rbac.confirm_no_escalation(user, namespace, FULL_AUTHORITY) is not None:
        return escalation_forbidden(resource, name, AGGREGATION_RULE_FORBIDDEN)
    return None


def check_binding_write(authorizer: Authorizer, rbac: RBACAuthorizer, user: UserInfo, *,
                        resource: str, namespace: str, name: str,
                        role_ref: Mapping[str, Any]) -> str | None:
    """kube's RBAC storage guard for creating or updating a RoleBinding
    (``resource="rolebindings"``, its namespace) or ClusterRoleBinding (namespace ""):
    None when the write may proceed, else the 403 message. Raises :class:`RoleRefError`
    when the user may not ``bind`` and the referenced role does not exist (kube answers
    404 for the role then)."""
    if escalation_allowed(user):
        return None
    bind = bind_attributes(user, role_ref, namespace)
    if bind is not None and authorizer.authorize(bind)[0] is Decision.ALLOW:
        return None
    problem = rbac.confirm_no_escalation(user, namespace, rbac.role_ref_rules(role_ref,
                                                                               namespace))
    return escalation_forbidden(resource, name, problem) if problem is not None else None


# --- aggregation (pkg/controller/clusterroleaggregation) -------------------------------------

# --- defaulting and validation (pkg/apis/rbac/v1/defaults.go, pkg/apis/rbac/validation) -----

def default_binding(obj: dict[str, Any]) -> None:
    """v1 defaulting of a (Cluster)RoleBinding, in place: ``roleRef.apiGroup`` and the
    ``apiGroup`` of User and Group subjects become ``rbac.authorization.k8s.io``."""
    if obj.get("roleRef") is None:
        obj["roleRef"] = {}
    ref = obj["roleRef"]
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = RBAC_GROUP
    for subject in obj.get("subjects") or ():
        if isinstance(subject, dict) and not subject.get("apiGroup") \
                and subject.get("kind") in (USER, GROUP):
            subject["apiGroup"] = RBAC_GROUP


def go_value(value: Any) -> str:
    """A bad value as Go's field errors print it (``%q`` strings, ``%#v`` the rest)."""
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(go_quote(v) for v in value) + "}"
    if value is None:
        return "null"
    return repr(value)


def _required(field: str, detail: str = "") -> Cause:
    message = f"Required value: {detail}" if detail else "Required value"
    return field_cause(field, message, reason="FieldValueRequired")


def _invalid(field: str, value: Any, detail: str) -> Cause:
    return field_cause(field, f"Invalid value: {go_value(value)}: {detail}")


def _type_invalid(field: str, value: Any, detail: str) -> Cause:
    return field_cause(field, f"Invalid value: {go_value(value)}: {detail}",
                       reason="FieldValueTypeInvalid")


def _not_supported(field: str, value: Any, supported: Sequence[str]) -> Cause:
    allowed = ", ".join(go_quote(s) for s in supported)
    return field_cause(field, f"Unsupported value: {go_value(value)}: supported values: "
                              f"{allowed}", reason="FieldValueNotSupported")


def path_segment_name_errors(name: str) -> list[str]:
    """apimachinery ``IsValidPathSegmentName``: RBAC names may hold ``:`` but no ``/``."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in name]


def _rule_type_causes(rule: Any, field: str) -> list[Cause]:
    if not isinstance(rule, Mapping):
        return [_type_invalid(field, rule, "must be an object")]
    return [_type_invalid(f"{field}.{key}", rule[key], "must be a list of strings")
            for key in _RULE_FIELDS
            if rule.get(key) is not None and not (
                isinstance(rule[key], list) and all(isinstance(v, str) for v in rule[key]))]


def policy_rule_causes(rule: Any, *, namespaced: bool, field: str) -> list[Cause]:
    """kube ``ValidatePolicyRule`` (after checking the JSON types)."""
    type_causes = _rule_type_causes(rule, field)
    if type_causes:
        return type_causes
    causes: list[Cause] = []
    if not _strings(rule, "verbs"):
        causes.append(_required(f"{field}.verbs", "verbs must contain at least one value"))
    urls = _strings(rule, "nonResourceURLs")
    if urls:
        if namespaced:
            causes.append(_invalid(f"{field}.nonResourceURLs", urls,
                                   "namespaced rules cannot apply to non-resource URLs"))
        if any(_strings(rule, key) for key in ("apiGroups", "resources", "resourceNames")):
            causes.append(_invalid(f"{field}.nonResourceURLs", urls, "rules cannot apply to "
                                   "both regular resources and non-resource URLs"))
        return causes
    if not _strings(rule, "apiGroups"):
        causes.append(_required(f"{field}.apiGroups",
                                "resource rules must supply at least one api group"))
    if not _strings(rule, "resources"):
        causes.append(_required(f"{field}.resources",
                                "resource rules must supply at least one resource"))
    return causes


def _rules_causes(obj: Obj, *, namespaced: bool) -> list[Cause]:
    rules = obj.get("rules")
    if rules is None:
        return []
    if not isinstance(rules, list):
        return [_type_invalid("rules", rules, "must be a list of rules")]
    return [cause for index, rule in enumerate(rules)
            for cause in policy_rule_causes(rule, namespaced=namespaced,
                                            field=f"rules[{index}]")]


def validate_role(obj: Obj, old: Obj | None = None) -> list[Cause]:
    """kube ``ValidateRole`` / ``ValidateRoleUpdate``."""
    return [*metadata_causes(dict(obj), name_check=path_segment_name_errors),
            *_rules_causes(obj, namespaced=True)]


def _aggregation_causes(obj: Obj) -> list[Cause]:
    aggregation = obj.get("aggregationRule")
    if aggregation is None:
        return []
    field = "aggregationRule.clusterRoleSelectors"
    if not isinstance(aggregation, Mapping):
        return [_type_invalid("aggregationRule", aggregation, "must be an object")]
    selectors = aggregation.get("clusterRoleSelectors")
    if selectors is not None and not isinstance(selectors, list):
        return [_type_invalid(field, selectors, "must be a list of label selectors")]
    if not selectors:
        return [_required(field, "at least one clusterRoleSelector required if "
                                 "aggregationRule is non-nil")]
    causes: list[Cause] = []
    for index, selector in enumerate(selectors):
        try:
            if not isinstance(selector, Mapping):
                raise SelectorError("must be a label selector")
            label_selector_from_spec(selector)
        except SelectorError as error:
            causes.append(_invalid(f"{field}[{index}]", str(selector), str(error)))
    return causes


def validate_cluster_role(obj: Obj, old: Obj | None = None) -> list[Cause]:
    """kube ``ValidateClusterRole`` / ``ValidateClusterRoleUpdate``."""
    return [*metadata_causes(dict(obj), name_check=path_segment_name_errors, namespaced=False),
            *_rules_causes(obj, namespaced=False), *_aggregation_causes(obj)]


def _role_ref_go(ref: Any) -> str:
    ref = ref if isinstance(ref, Mapping) else {}
    return (f"rbac.RoleRef{{APIGroup:{go_quote(str(ref.get('apiGroup') or ''))}, "
            f"Kind:{go_quote(str(ref.get('kind') or ''))}, "
            f"Name:{go_quote(str(ref.get('name') or ''))}}}")


def _role_ref_causes(ref: Any, kinds: Sequence[str]) -> list[Cause]:
    if not isinstance(ref, Mapping):
        return [_type_invalid("roleRef", ref, "must be an object")]
    causes: list[Cause] = []
    if ref.get("apiGroup") != RBAC_GROUP:
        causes.append(_not_supported("roleRef.apiGroup", ref.get("apiGroup") or "",
                                     [RBAC_GROUP]))
    if ref.get("kind") not in kinds:
        causes.append(_not_supported("roleRef.kind", ref.get("kind") or "", kinds))
    name = ref.get("name")
    if not name:
        causes.append(_required("roleRef.name"))
    elif not isinstance(name, str):
        causes.append(_type_invalid("roleRef.name", name, "must be a string"))
    else:
        causes += [_invalid("roleRef.name", name, e) for e in path_segment_name_errors(name)]
    return causes


def subject_causes(subject: Any, *, namespaced: bool, field: str) -> list[Cause]:
    """kube ``ValidateRoleBindingSubject``."""
    if not isinstance(subject, Mapping):
        return [_type_invalid(field, subject, "must be an object")]
    causes: list[Cause] = []
    name, kind, group = subject.get("name"), subject.get("kind"), subject.get("apiGroup") or ""
    if not name:
        causes.append(_required(f"{field}.name"))
    if kind == SERVICE_ACCOUNT:
        if name and isinstance(name, str):
            causes += [_invalid(f"{field}.name", name, e) for e in dns1123_subdomain_errors(name)]
        if group:
            causes.append(_not_supported(f"{field}.apiGroup", group, [""]))
        if not namespaced and not subject.get("namespace"):
            causes.append(_required(f"{field}.namespace"))
    elif kind in (USER, GROUP):
        if group != RBAC_GROUP:
            causes.append(_not_supported(f"{field}.apiGroup", group, [RBAC_GROUP]))
    else:
        causes.append(_not_supported(f"{field}.kind", kind or "",
                                     [SERVICE_ACCOUNT, USER, GROUP]))
    return causes


def _binding_causes(obj: Obj, old: Obj | None, *, namespaced: bool) -> list[Cause]:
    kinds = (ROLE, CLUSTER_ROLE) if namespaced else (CLUSTER_ROLE,)
    causes = [*metadata_causes(dict(obj), name_check=path_segment_name_errors,
                               namespaced=namespaced),
              *_role_ref_causes(obj.get("roleRef"), kinds)]
    subjects = obj.get("subjects")
    if subjects is not None and not isinstance(subjects, list):
        causes.append(_type_invalid("subjects", subjects, "must be a list of subjects"))
    else:
        for index, subject in enumerate(subjects or ()):
            causes += subject_causes(subject, namespaced=namespaced, field=f"subjects[{index}]")
    if old is not None and _role_ref_go(old.get("roleRef")) != _role_ref_go(obj.get("roleRef")):
        causes.append(field_cause("roleRef", f"Invalid value: {_role_ref_go(obj.get('roleRef'))}"
                                             ": cannot change roleRef"))
    return causes


def validate_role_binding(obj: Obj, old: Obj | None = None) -> list[Cause]:
    """kube ``ValidateRoleBinding`` / ``ValidateRoleBindingUpdate`` (defaulted object)."""
    return _binding_causes(obj, old, namespaced=True)


def validate_cluster_role_binding(obj: Obj, old: Obj | None = None) -> list[Cause]:
    """kube ``ValidateClusterRoleBinding`` / ``...Update`` (defaulted object)."""
    return _binding_causes(obj, old, namespaced=False)

