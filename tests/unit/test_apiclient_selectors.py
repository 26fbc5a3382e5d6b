"""Label and field selectors: the Kubernetes grammar, validation and matching."""

import pytest

from apiclient.selectors import (
    SelectorError,
    label_selector_from_spec,
    parse_field_selector,
    parse_label_selector,
    selector_from_set,
)

LABELS = {"app": "web", "tier": "front", "version": "3", "example.com/team": "blue"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("app in (web,db)", True),
        ("app in (db)", False),
        ("app notin (db,cache)", True),
        ("app notin (web)", False),
        ("missing notin (a)", True),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("example.com/team=blue", True),
        ("version>2", True),
        ("version<3", False),
        ("missing>1", False),
        ("  app = web ,  tier in ( front , back ) ", True),
    ],
)
def test_label_selector_matches_like_kubernetes(text, expected):
    assert parse_label_selector(text).matches(LABELS) is expected


def test_empty_selector_matches_everything_including_no_labels():
    selector = parse_label_selector("")
    assert selector.empty
    assert selector.matches(None)
    assert selector.matches({"a": "b"})


def test_empty_value_is_allowed():
    assert parse_label_selector("app=").matches({"app": ""})
    assert not parse_label_selector("app=").matches({"app": "web"})
    assert parse_label_selector("app=,tier").matches({"app": "", "tier": "x"})


def test_canonical_text_is_sorted_and_normalised():
    selector = parse_label_selector("tier in (b, a),  app==web, !zz, k")
    assert str(selector) == "app=web,k,tier in (a,b),!zz"
    assert parse_label_selector(str(selector)) == selector


@pytest.mark.parametrize(
    "text",
    [
        "app=web,",
        ",app",
        "app in web",
        "app in (web",
        "app=web=x",
        "app ~ web",
        "!",
        "a b",
        "in=x",
        "app=(x)",
        "version>abc",
        "-bad=x",
        "app=-bad",
        "x" * 64 + "=a",
        "a=" + "x" * 64,
        "Example.com/a=b",
        "/a=b",
        "example.com/=b",
        "a/b/c=d",
    ],
)
def test_invalid_label_selectors_are_rejected(text):
    with pytest.raises(SelectorError, match="label"):
        parse_label_selector(text)


def test_error_says_what_was_expected():
    with pytest.raises(SelectorError, match="identifier after ','"):
        parse_label_selector("app=web,")


def test_long_valid_key_prefix_and_name():
    key = "a" * 60 + ".example.com/" + "n" * 63
    assert parse_label_selector(f"{key}=v").matches({key: "v"})


def test_selector_from_set_is_equality_on_every_pair():
    selector = selector_from_set({"app": "web", "tier": "front"})
    assert selector.matches(LABELS)
    assert not selector.matches({"app": "web"})
    assert str(selector) == "app=web,tier=front"
    assert selector_from_set({}).empty


def test_selector_from_set_validates():
    with pytest.raises(SelectorError):
        selector_from_set({"bad key": "x"})


def test_nil_spec_matches_nothing_and_empty_spec_everything():
    nothing = label_selector_from_spec(None)
    assert nothing.matches_nothing
    assert not nothing.empty
    assert not nothing.matches({})
    assert not nothing.matches(LABELS)
    everything = label_selector_from_spec({})
    assert everything.empty
    assert everything.matches(LABELS)


def test_spec_with_labels_and_expressions():
    selector = label_selector_from_spec(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "version", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    assert selector.matches(LABELS)
    assert not selector.matches({**LABELS, "legacy": "1"})
    assert not selector.matches({**LABELS, "env": "prod"})
    assert not selector.matches({"app": "web", "tier": "front"})
    assert str(selector) == "app=web,env notin (prod),!legacy,tier in (edge,front),version"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ({"key": "a", "operator": "Gt", "values": ["1"]}, "operator"),
        ({"key": "a", "operator": "In", "values": []}, "at least one value"),
        ({"key": "a", "operator": "Exists", "values": ["x"]}, "take no values"),
        ({"key": "bad key", "operator": "Exists"}, "label key"),
    ],
)
def test_invalid_spec_expressions(expression, message):
    with pytest.raises(SelectorError, match=message):
        label_selector_from_spec({"matchExpressions": [expression]})


POD_FIELDS = {"metadata.name": "web-1", "metadata.namespace": "default", "spec.nodeName": "n1"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("spec.nodeName=n1", True),
        ("spec.nodeName==n1", True),
        ("spec.nodeName!=n1", False),
        ("spec.nodeName=n2", False),
        ("spec.nodeName=n1,metadata.name=web-1", True),
        ("spec.nodeName=n1,metadata.name!=web-1", False),
        ("status.phase=", True),
        ("status.phase!=", False),
    ],
)
def test_field_selector_matches(text, expected):
    assert parse_field_selector(text).matches(POD_FIELDS) is expected


def test_field_selector_reports_fields_and_emptiness():
    selector = parse_field_selector("spec.nodeName=n1,metadata.name!=x")
    assert selector.fields == frozenset({"spec.nodeName", "metadata.name"})
    assert not selector.empty
    assert parse_field_selector("").empty


def test_field_selector_escapes_round_trip():
    selector = parse_field_selector(r"metadata.name=a\,b\=c\\d\!e")
    assert selector.matches({"metadata.name": "a,b=c\\d!e"})
    assert parse_field_selector(str(selector)) == selector


@pytest.mark.parametrize("text", ["spec.nodeName", "=x", "a=b=c", r"a=b\q", "a=b\\", "a=b,c"])
def test_invalid_field_selectors(text):
    with pytest.raises(SelectorError, match="field selector"):
        parse_field_selector(text)
