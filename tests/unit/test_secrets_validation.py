"""Secrets: stringData folding, base64, and kube's per-type and update validation."""

from __future__ import annotations

import base64
import copy

import pytest

from apiserver import status
from apiserver.strategies.secrets import STRATEGY, normalize


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(secret_type: str | None = None, *, name: str = "s", data: dict | None = None,
           annotations: dict | None = None, **extra) -> dict:
    obj: dict = {"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": name, "namespace": "default"},
                 "data": {k: b64(v) for k, v in (data or {}).items()}, **extra}
    if secret_type is not None:
        obj["type"] = secret_type
    if annotations:
        obj["metadata"]["annotations"] = annotations
    return obj


def created(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    STRATEGY.prepare_for_create(obj)
    return obj


def create_causes(obj: dict) -> list[str]:
    obj = created(obj)
    return [f"{c['field']}: {c['message']}" for c in STRATEGY.validate(obj, None)]


def update_causes(new: dict, old: dict) -> list[str]:
    new = copy.deepcopy(new)
    STRATEGY.prepare_for_update(new, old)
    return [f"{c['field']}: {c['message']}" for c in STRATEGY.validate(new, old)]


def test_string_data_is_merged_into_data_and_never_kept():
    obj = created(secret(data={"a": "from data", "b": "kept"},
                         stringData={"a": "from stringData", "c": "new"}))
    assert "stringData" not in obj
    assert obj["data"] == {"a": b64("from stringData"), "b": b64("kept"), "c": b64("new")}
    assert obj["type"] == "Opaque"


def test_data_must_be_base64_a_400_like_kubes_decoder():
    with pytest.raises(status.StatusError) as caught:
        normalize({"data": {"a": "!!not base64"}})
    assert caught.value.code == 400
    assert caught.value.message.startswith('Secret in version "v1" cannot be handled as a '
                                           'Secret: illegal base64 data in data[a]')


PEM = "-----BEGIN X-----\nAAAA\n-----END X-----\n"


@pytest.mark.parametrize(("obj", "expected"), [
    (secret(data={"password": "x"}), []),
    (secret("Opaque", data={"bad key!": "x"}),
     ["data[bad key!]: Invalid value: \"bad key!\": a valid config key must consist of "
      "alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
      "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]),
    (secret("kubernetes.io/tls", data={"tls.crt": PEM, "tls.key": PEM}), []),
    (secret("kubernetes.io/tls", data={"tls.crt": PEM}), ["data[tls.key]: Required value"]),
    (secret("kubernetes.io/tls"),
     ["data[tls.crt]: Required value", "data[tls.key]: Required value"]),
    (secret("kubernetes.io/dockerconfigjson", data={".dockerconfigjson": '{"auths": {}}'}), []),
    (secret("kubernetes.io/dockerconfigjson"), ["data[.dockerconfigjson]: Required value"]),
    (secret("kubernetes.io/dockerconfigjson", data={".dockerconfigjson": "not json"}),
     ['data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": invalid JSON: '
      'Expecting value']),
    (secret("kubernetes.io/dockerconfigjson", data={".dockerconfigjson": "[1]"}),
     ['data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": json: cannot '
      'unmarshal list into Go value of type map[string]interface {}']),
    (secret("kubernetes.io/service-account-token"),
     ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]),
    (secret("kubernetes.io/service-account-token",
            annotations={"kubernetes.io/service-account.name": "default"}), []),
    (secret("kubernetes.io/basic-auth"),
     ["data[username]: Required value", "data[password]: Required value"]),
    (secret("kubernetes.io/basic-auth", data={"password": "p"}), []),
    (secret("kubernetes.io/ssh-auth", data={"ssh-privatekey": ""}),
     ["data[ssh-privatekey]: Required value"]),
    (secret("example.com/anything", data={"k": "v"}), []),
])
def test_type_specific_validation(obj, expected):
    assert create_causes(obj) == expected


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("bootstrap-token-abcdef", {"token-id": "abcdef", "token-secret": "0123456789abcdef"}, []),
    ("bootstrap-token-abcdef", {"token-id": "ABCDEF", "token-secret": "0123456789abcdef"},
     ['data[token-id]: Invalid value: "ABCDEF": must match the regex [a-z0-9]{6}']),
    ("bootstrap-token-abcdef", {"token-id": "abcdef", "token-secret": "short"},
     ['data[token-secret]: Invalid value: "<secret contents redacted>": must match the regex '
      '[a-z0-9]{16}']),
    ("my-token", {"token-id": "abcdef", "token-secret": "0123456789abcdef"},
     ['metadata.name: Invalid value: "my-token": must be "bootstrap-token-<token-id>" '
      '("bootstrap-token-abcdef")']),
    ("bootstrap-token-abcdef", {}, ["data[token-id]: Required value",
                                    "data[token-secret]: Required value"]),
])
def test_bootstrap_token_format(name, data, expected):
    assert create_causes(secret("bootstrap.kubernetes.io/token", name=name, data=data)) == \
        expected


def test_secret_data_is_limited_to_one_mebibyte():
    causes = create_causes(secret(data={"big": "x" * (1024 * 1024 + 1)}))
    assert causes == ["data: Too long: must have at most 1048576 bytes"]


def test_type_is_immutable_and_kept_when_an_update_leaves_it_out():
    old = created(secret("kubernetes.io/tls", data={"tls.crt": PEM, "tls.key": PEM}))
    changed = copy.deepcopy(old) | {"type": "Opaque"}
    assert update_causes(changed, old) == ['type: Invalid value: "Opaque": field is immutable']
    untyped = copy.deepcopy(old)
    del untyped["type"]
    assert update_causes(untyped, old) == []


def test_an_immutable_secret_keeps_its_data_and_stays_immutable():
    old = created(secret(data={"a": "1"}, immutable=True))
    assert update_causes(copy.deepcopy(old) | {"data": {"a": b64("2")}}, old) == [
        "data: Forbidden: field is immutable when `immutable` is set"]
    assert update_causes(copy.deepcopy(old) | {"immutable": False}, old) == [
        "immutable: Forbidden: field is immutable when `immutable` is set"]
    relabelled = copy.deepcopy(old)
    relabelled["metadata"]["labels"] = {"a": "b"}
    assert update_causes(relabelled, old) == []


def test_string_data_on_update_is_merged_before_the_immutability_check():
    old = created(secret(data={"a": "1"}, immutable=True))
    same = copy.deepcopy(old) | {"stringData": {"a": "1"}}
    assert update_causes(same, old) == []
