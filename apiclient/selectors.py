"""Label and field selectors, parsed and matched the way Kubernetes does.

Both the apiserver (filtering lists and watches) and the clients (informers, controllers)
use this one module, so a selector means the same thing on both sides of the wire.

Invariants:
- A parsed `LabelSelector` is immutable; its requirements are sorted by key, so `str()`
  gives one canonical text for equal selectors (as `labels.Parse(...).String()` does).
- Label keys and values are validated like Kubernetes: keys are qualified names
  (`[prefix/]name`, name <= 63 chars, prefix a DNS subdomain <= 253 chars), values are
  empty or <= 63 chars of `[A-Za-z0-9._-]` starting and ending alphanumeric.
- The empty selector matches everything. A *nil* metav1.LabelSelector (`None`) matches
  nothing (`LabelSelectorAsSelector(nil)` is `labels.Nothing()`); its text form is "",
  exactly like Kubernetes, so check `matches_nothing` before sending it to a server.
- A field selector compares against a flat `{"metadata.name": ..., "spec.nodeName": ...}`
  mapping; a field the object lacks compares as "" (Kubernetes `fields.Set.Get`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Operator",
    "Requirement",
    "SelectorError",
    "label_selector_from_spec",
    "parse_field_selector",
    "parse_label_selector",
    "selector_from_set",
    "validate_label_key",
    "validate_label_value",
]


class SelectorError(ValueError):
    """A selector (or a label key/value in it) is not valid Kubernetes syntax."""


# --------------------------------------------------------------------------- validation

_NAME_MAX = 63
_PREFIX_MAX = 253
_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a valid label key (a qualified name), or None when it is."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return f"label key {key!r}: prefix part must be non-empty"
    if prefix:
        if len(prefix) > _PREFIX_MAX:
            return f"label key {key!r}: prefix part must be no more than {_PREFIX_MAX} characters"
        if "/" in prefix or not _DNS_SUBDOMAIN_RE.match(prefix):
            return (
                f"label key {key!r}: prefix part must be a lowercase DNS subdomain "
                "(e.g. 'example.com')"
            )
    if not name:
        return f"label key {key!r}: name part must be non-empty"
    if len(name) > _NAME_MAX:
        return f"label key {key!r}: name part must be no more than {_NAME_MAX} characters"
    if not _NAME_RE.match(name):
        return (
            f"label key {key!r}: name part must consist of alphanumeric characters, '-', '_' "
            "or '.', and must start and end with an alphanumeric character"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why `value` is not a valid label value, or None when it is."""
    if len(value) > _NAME_MAX:
        return f"label value {value!r}: must be no more than {_NAME_MAX} characters"
    if value and not _NAME_RE.match(value):
        return (
            f"label value {value!r}: must be empty or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )
    return None


def validate_label_key(key: str) -> None:
    """Raise SelectorError unless `key` is a valid label key."""
    problem = label_key_problem(key)
    if problem:
        raise SelectorError(problem)


def validate_label_value(value: str) -> None:
    """Raise SelectorError unless `value` is a valid label value."""
    problem = label_value_problem(value)
    if problem:
        raise SelectorError(problem)


# --------------------------------------------------------------------------- label selectors


class Operator(StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


@dataclass(frozen=True)
class Requirement:
    """One `key op values` term; `values` is sorted and de-duplicated."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        op = self.operator
        if op is Operator.EXISTS:
            return present
        if op is Operator.DOES_NOT_EXIST:
            return not present
        if op in (Operator.EQUALS, Operator.IN):
            return present and labels[self.key] in self.values
        if op in (Operator.NOT_EQUALS, Operator.NOT_IN):
            return not present or labels[self.key] not in self.values
        # Gt / Lt: both sides must be integers, as in Kubernetes.
        if not present:
            return False
        try:
            have, want = int(labels[self.key]), int(self.values[0])
        except ValueError:
            return False
        return have > want if op is Operator.GREATER_THAN else have < want

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if op in (Operator.EQUALS, Operator.NOT_EQUALS):
            return f"{self.key}{op.value}{self.values[0]}"
        if op is Operator.GREATER_THAN:
            return f"{self.key}>{self.values[0]}"
        if op is Operator.LESS_THAN:
            return f"{self.key}<{self.values[0]}"
        return f"{self.key} {op.value} ({','.join(self.values)})"


def make_requirement(key: str, operator: Operator, values: Iterable[str] = ()) -> Requirement:
    """Build a validated Requirement (Kubernetes `labels.NewRequirement`)."""
    validate_label_key(key)
    unique = tuple(sorted(set(values)))
    if operator in (Operator.EQUALS, Operator.NOT_EQUALS) and len(unique) != 1:
        raise SelectorError(f"label key {key!r}: exact-match operators need exactly one value")
    if operator in (Operator.IN, Operator.NOT_IN) and not unique:
        raise SelectorError(f"label key {key!r}: 'in' and 'notin' need at least one value")
    if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and unique:
        raise SelectorError(f"label key {key!r}: 'exists' and '!' take no values")
    if operator in (Operator.GREATER_THAN, Operator.LESS_THAN):
        if len(unique) != 1:
            raise SelectorError(f"label key {key!r}: '>' and '<' need exactly one value")
        try:
            int(unique[0])
        except ValueError:
            raise SelectorError(
                f"label key {key!r}: '>' and '<' need an integer value, not {unique[0]!r}"
            ) from None
    else:
        for value in unique:
            validate_label_value(value)
    return Requirement(key, operator, unique)


class LabelSelector:
    """An AND of label requirements (or, for a nil spec, a selector that matches nothing)."""

    __slots__ = ("_matches_nothing", "requirements")

    def __init__(self, requirements: Iterable[Requirement] = (), *, matches_nothing: bool = False):
        self.requirements: tuple[Requirement, ...] = tuple(
            sorted(requirements, key=lambda r: r.key)
        )
        self._matches_nothing = matches_nothing

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    @classmethod
    def nothing(cls) -> LabelSelector:
        return cls(matches_nothing=True)

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self._matches_nothing:
            return False
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)

    @property
    def empty(self) -> bool:
        """True when the selector matches every object (no requirements)."""
        return not self._matches_nothing and not self.requirements

    @property
    def matches_nothing(self) -> bool:
        return self._matches_nothing

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)

    def __repr__(self) -> str:
        if self._matches_nothing:
            return "LabelSelector.nothing()"
        return f"LabelSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelSelector):
            return NotImplemented
        return (self.requirements, self._matches_nothing) == (
            other.requirements,
            other._matches_nothing,
        )

    def __hash__(self) -> int:
        return hash((self.requirements, self._matches_nothing))


# Tokens of the Kubernetes label selector grammar (apimachinery labels/selector.go lexer).
_SPECIAL = "!=(),<>"
_TOKEN_RE = re.compile(r"\s*(?:(==|!=|[!=(),<>])|([^\s!=(),<>]+))")


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if match is None:  # only trailing whitespace is left
            break
        tokens.append(match.group(1) or match.group(2))
        position = match.end()
    return tokens


class _LabelParser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.position = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.position += 1
        return token

    def fail(self, found: str | None, expected: str) -> SelectorError:
        shown = "end of string" if found is None else repr(found)
        return SelectorError(
            f"unable to parse label selector {self.text!r}: found {shown}, expected: {expected}"
        )

    @staticmethod
    def is_identifier(token: str | None) -> bool:
        return token is not None and token not in ("==", "!=") and token[0] not in _SPECIAL

    def parse(self) -> LabelSelector:
        requirements: list[Requirement] = []
        if self.peek() is None:
            return LabelSelector.everything()
        while True:
            token = self.peek()
            if not (token == "!" or self.is_key(token)):
                raise self.fail(token, "!, identifier, or end of string")
            requirements.append(self.parse_requirement())
            separator = self.take()
            if separator is None:
                return LabelSelector(requirements)
            if separator != ",":
                raise self.fail(separator, "',' or end of string")
            following = self.peek()
            if not (following == "!" or self.is_key(following)):
                raise self.fail(following, "identifier after ','")

    def is_key(self, token: str | None) -> bool:
        return self.is_identifier(token) and token not in ("in", "notin")

    def parse_requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            key = self.take()
            if not self.is_key(key):
                raise self.fail(key, "identifier after '!'")
            return self.build(key, Operator.DOES_NOT_EXIST, ())
        key = self.take()
        assert key is not None
        operator_token = self.peek()
        if operator_token is None or operator_token == ",":
            return self.build(key, Operator.EXISTS, ())
        self.take()
        operators = {
            "=": Operator.EQUALS,
            "==": Operator.EQUALS,
            "!=": Operator.NOT_EQUALS,
            "in": Operator.IN,
            "notin": Operator.NOT_IN,
            ">": Operator.GREATER_THAN,
            "<": Operator.LESS_THAN,
        }
        operator = operators.get(operator_token)
        if operator is None:
            raise self.fail(operator_token, "=, ==, !=, in, notin, >, <")
        if operator in (Operator.IN, Operator.NOT_IN):
            return self.build(key, operator, self.parse_set())
        value = self.peek()
        if self.is_identifier(value):
            self.take()
            return self.build(key, operator, (value,))
        # `a=` and `a=,b` mean "a has the empty value", as in Kubernetes.
        if value is None or value == ",":
            return self.build(key, operator, ("",))
        raise self.fail(value, "a value")

    def parse_set(self) -> list[str]:
        opening = self.take()
        if opening != "(":
            raise self.fail(opening, "'('")
        values: list[str] = []
        expect_value = True
        while True:
            token = self.take()
            if token == ")":
                if expect_value:  # `()` or `(a,)`: an empty value, as in Kubernetes
                    values.append("")
                return values
            if token == ",":
                if expect_value:
                    values.append("")
                expect_value = True
                continue
            if expect_value and token is not None and self.is_identifier(token):
                values.append(token)
                expect_value = False
                continue
            raise self.fail(token, "a value, ',' or ')'")

    def build(self, key: str, operator: Operator, values: Iterable[str]) -> Requirement:
        try:
            return make_requirement(key, operator, values)
        except SelectorError as error:
            raise SelectorError(f"unable to parse label selector {self.text!r}: {error}") from None


def parse_label_selector(text: str) -> LabelSelector:
    """Parse the Kubernetes label selector text form (`labelSelector=` query parameter)."""
    return _LabelParser(text).parse()


def selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    """Equality on every pair (a Service's spec.selector); empty or None matches everything."""
    return LabelSelector(
        make_requirement(key, Operator.EQUALS, (value,)) for key, value in (labels or {}).items()
    )


_SPEC_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


def label_selector_from_spec(spec: Mapping | None) -> LabelSelector:
    """Convert a metav1.LabelSelector (matchLabels + matchExpressions).

    None matches nothing; an empty mapping matches everything (LabelSelectorAsSelector).
    """
    if spec is None:
        return LabelSelector.nothing()
    requirements = [
        make_requirement(key, Operator.EQUALS, (value,))
        for key, value in (spec.get("matchLabels") or {}).items()
    ]
    for index, expression in enumerate(spec.get("matchExpressions") or []):
        operator = _SPEC_OPERATORS.get(expression.get("operator", ""))
        if operator is None:
            raise SelectorError(
                f"matchExpressions[{index}].operator: {expression.get('operator')!r} is not a "
                "valid label selector operator (In, NotIn, Exists, DoesNotExist)"
            )
        key = expression.get("key", "")
        try:
            requirements.append(make_requirement(key, operator, expression.get("values") or ()))
        except SelectorError as error:
            raise SelectorError(f"matchExpressions[{index}]: {error}") from None
    return LabelSelector(requirements)


# --------------------------------------------------------------------------- field selectors


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    value: str
    negated: bool = False

    def matches(self, fields: Mapping[str, str]) -> bool:
        return (fields.get(self.field, "") == self.value) != self.negated

    def __str__(self) -> str:
        return f"{_escape_field_value(self.field)}{'!=' if self.negated else '='}" + (
            _escape_field_value(self.value)
        )


def _escape_field_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace("!", "\\!")


class FieldSelector:
    """An AND of `field=value` / `field!=value` terms."""

    __slots__ = ("requirements",)

    def __init__(self, requirements: Iterable[FieldRequirement] = ()):
        self.requirements: tuple[FieldRequirement, ...] = tuple(
            sorted(requirements, key=lambda r: (r.field, r.negated, r.value))
        )

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(requirement.matches(fields) for requirement in self.requirements)

    @property
    def fields(self) -> frozenset[str]:
        """The field names referenced (the server checks they are supported)."""
        return frozenset(requirement.field for requirement in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldSelector):
            return NotImplemented
        return self.requirements == other.requirements

    def __hash__(self) -> int:
        return hash(self.requirements)


def _split_unescaped(text: str) -> list[str]:
    """Split on commas that are not escaped with a backslash (escapes kept)."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(text: str, whole: str) -> str:
    out, escaped = [], False
    for char in text:
        if escaped:
            if char not in "\\,=!":
                raise SelectorError(
                    f"invalid field selector {whole!r}: invalid escape sequence '\\{char}'"
                )
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "=!,":
            raise SelectorError(f"invalid field selector {whole!r}: unescaped {char!r} in {text!r}")
        else:
            out.append(char)
    if escaped:
        raise SelectorError(f"invalid field selector {whole!r}: trailing backslash in {text!r}")
    return "".join(out)


def _split_term(term: str) -> tuple[str, str, str] | None:
    """Find the first unescaped operator (!=, ==, =) in a term."""
    index, escaped = 0, False
    while index < len(term):
        char = term[index]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            for operator in ("!=", "==", "="):
                if term.startswith(operator, index):
                    return term[:index], operator, term[index + len(operator) :]
        index += 1
    return None


def parse_field_selector(text: str) -> FieldSelector:
    """Parse the `fieldSelector=` query parameter: `a=b`, `a==b`, `a!=b`, comma-separated."""
    if not text.strip():
        return FieldSelector()
    requirements = []
    for term in _split_unescaped(text):
        split = _split_term(term)
        if split is None:
            raise SelectorError(
                f"invalid field selector {text!r}: {term!r} is not 'field=value', "
                "'field==value' or 'field!=value'"
            )
        raw_field, operator, raw_value = split
        field = _unescape(raw_field.strip(), text)
        if not field:
            raise SelectorError(f"invalid field selector {text!r}: empty field name in {term!r}")
        requirements.append(
            FieldRequirement(field, _unescape(raw_value, text), negated=operator == "!=")
        )
    return FieldSelector(requirements)
