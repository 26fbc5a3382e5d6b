"""Encryption at rest: kube's config format, on-disk prefixes, rotation and validation."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from apiserver.storage.encryption import (
    IDENTITY,
    DecryptionError,
    EncryptionConfigError,
    load_encryption_config,
    parse_encryption_config,
)

KEY32 = base64.b64encode(bytes(range(32))).decode()
KEY32_B = base64.b64encode(bytes(range(100, 132))).decode()
KEY16 = base64.b64encode(bytes(16)).decode()
STORAGE_KEY = "/registry/secrets/default/db"
SECRET_JSON = b'{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}'


def config(*providers, resources=("secrets",)) -> dict:
    return {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            "resources": [{"resources": list(resources), "providers": list(providers)}]}


def keyed(kind: str, *keys: tuple[str, str]) -> dict:
    return {kind: {"keys": [{"name": name, "secret": secret} for name, secret in keys]}}


IDENTITY_PROVIDER = {"identity": {}}


@pytest.mark.parametrize("kind", ["aesgcm", "aescbc", "secretbox"])
def test_round_trip_and_on_disk_prefix(kind):
    transformer = parse_encryption_config(config(keyed(kind, ("key1", KEY32)))) \
        .for_resource("secrets")
    stored = transformer.encrypt(SECRET_JSON, STORAGE_KEY)
    assert stored.startswith(f"k8s:enc:{kind}:v1:key1:".encode())
    assert SECRET_JSON not in stored
    assert transformer.encrypt(SECRET_JSON, STORAGE_KEY) != stored  # fresh nonce / IV
    assert transformer.decrypt(stored, STORAGE_KEY) == (SECRET_JSON, False)
    assert transformer.decrypt(transformer.encrypt(b"", STORAGE_KEY), STORAGE_KEY) == (b"", False)


def test_on_disk_layouts_match_kube():
    for kind, header, minimum in [("aesgcm", 12, 16), ("aescbc", 16, 16), ("secretbox", 24, 16)]:
        transformer = parse_encryption_config(config(keyed(kind, ("k", KEY32)))) \
            .for_resource("secrets")
        body = transformer.encrypt(b"x" * 20, STORAGE_KEY)[len(f"k8s:enc:{kind}:v1:k:"):]
        assert len(body) >= header + minimum, kind
    # AES-GCM: nonce then ciphertext+tag, the storage key as additional data (kube's format).
    transformer = parse_encryption_config(config(keyed("aesgcm", ("k", KEY32)))) \
        .for_resource("secrets")
    body = transformer.encrypt(SECRET_JSON, STORAGE_KEY)[len(b"k8s:enc:aesgcm:v1:k:"):]
    aead = AESGCM(base64.b64decode(KEY32))
    assert aead.decrypt(body[:12], body[12:], STORAGE_KEY.encode()) == SECRET_JSON


def test_aesgcm_binds_the_storage_key():
    transformer = parse_encryption_config(config(keyed("aesgcm", ("k", KEY32)))) \
        .for_resource("secrets")
    stored = transformer.encrypt(SECRET_JSON, STORAGE_KEY)
    with pytest.raises(DecryptionError) as caught:
        transformer.decrypt(stored, "/registry/secrets/default/copied-elsewhere")
    assert caught.value.keys == ('aesgcm key "k"',)
    assert 'aesgcm key "k": message authentication failed' in str(caught.value)


@pytest.mark.parametrize("kind", ["aesgcm", "aescbc", "secretbox"])
def test_tampered_ciphertext_is_refused_naming_the_key(kind):
    transformer = parse_encryption_config(config(keyed(kind, ("key1", KEY32)))) \
        .for_resource("secrets")
    stored = bytearray(transformer.encrypt(SECRET_JSON * 3, STORAGE_KEY))
    stored[-1] ^= 0x01
    try:
        plaintext, _ = transformer.decrypt(bytes(stored), STORAGE_KEY)
    except DecryptionError as error:
        assert f'{kind} key "key1"' in str(error)
    else:  # CBC has no authentication: a flipped last byte can only break the padding...
        assert kind == "aescbc" and plaintext != SECRET_JSON * 3


def test_rotation_new_first_key_reads_old_data_as_stale():
    old = parse_encryption_config(config(keyed("aesgcm", ("old", KEY32)))).for_resource("secrets")
    stored = old.encrypt(SECRET_JSON, STORAGE_KEY)
    rotated = parse_encryption_config(config(keyed("aesgcm", ("new", KEY32_B), ("old", KEY32))))
    transformer = rotated.for_resource("secrets")
    assert transformer.decrypt(stored, STORAGE_KEY) == (SECRET_JSON, True)
    rewritten = transformer.encrypt(SECRET_JSON, STORAGE_KEY)
    assert rewritten.startswith(b"k8s:enc:aesgcm:v1:new:")
    assert transformer.decrypt(rewritten, STORAGE_KEY) == (SECRET_JSON, False)
    # Rotating across providers works the same way.
    switched = parse_encryption_config(config(keyed("secretbox", ("sb", KEY32_B)),
                                              keyed("aesgcm", ("old", KEY32))))
    assert switched.for_resource("secrets").decrypt(stored, STORAGE_KEY) == (SECRET_JSON, True)


def test_same_prefix_tried_in_order_until_one_works():
    # Two aesgcm providers share the prefix family; the wrong key's failure is not fatal.
    stored = parse_encryption_config(config(keyed("aesgcm", ("k", KEY32)))) \
        .for_resource("secrets").encrypt(SECRET_JSON, STORAGE_KEY)
    both = parse_encryption_config(config(keyed("aesgcm", ("k", KEY32_B)),
                                          keyed("aesgcm", ("k", KEY32))))
    assert both.for_resource("secrets").decrypt(stored, STORAGE_KEY) == (SECRET_JSON, True)


def test_identity_first_reads_old_encrypted_and_plain_data():
    encrypted = parse_encryption_config(config(keyed("aescbc", ("k", KEY32)))) \
        .for_resource("secrets").encrypt(SECRET_JSON, STORAGE_KEY)
    migrate = parse_encryption_config(config(IDENTITY_PROVIDER, keyed("aescbc", ("k", KEY32))))
    transformer = migrate.for_resource("secrets")
    assert transformer.decrypt(encrypted, STORAGE_KEY) == (SECRET_JSON, True)
    assert transformer.decrypt(SECRET_JSON, STORAGE_KEY) == (SECRET_JSON, False)
    assert transformer.encrypt(SECRET_JSON, STORAGE_KEY) == SECRET_JSON


def test_plaintext_needs_identity_in_the_list():
    encrypting = parse_encryption_config(config(keyed("aesgcm", ("k", KEY32)), IDENTITY_PROVIDER))
    assert encrypting.for_resource("secrets").decrypt(SECRET_JSON, STORAGE_KEY) == \
        (SECRET_JSON, True)
    strict = parse_encryption_config(config(keyed("aesgcm", ("k", KEY32))))
    with pytest.raises(DecryptionError, match="does not match any of the supported"):
        strict.for_resource("secrets").decrypt(SECRET_JSON, STORAGE_KEY)
    with pytest.raises(DecryptionError, match="does not match any of the supported"):
        strict.for_resource("secrets").decrypt(b"k8s:enc:aesgcm:v1:gone:xxxxxxxxxxxxxxxx",
                                               STORAGE_KEY)
    with pytest.raises(DecryptionError):
        IDENTITY.decrypt(b"k8s:enc:aesgcm:v1:k:abc", STORAGE_KEY)


def test_resource_lookup_exact_then_group_wildcard_then_all():
    document = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
                "resources": [
                    {"resources": ["secrets"], "providers": [keyed("aesgcm", ("s", KEY32))]},
                    {"resources": ["*.apps"], "providers": [keyed("aescbc", ("a", KEY32))]},
                    {"resources": ["*.*"], "providers": [keyed("secretbox", ("all", KEY32))]},
                ]}
    parsed = parse_encryption_config(document)
    assert parsed.for_resource("secrets").write_provider == "aesgcm:s"
    assert parsed.for_resource("deployments", "apps").write_provider == "aescbc:a"
    assert parsed.for_resource("configmaps").write_provider == "secretbox:all"
    only_secrets = parse_encryption_config(config(keyed("aesgcm", ("s", KEY32))))
    assert only_secrets.for_resource("configmaps") is IDENTITY
    core = parse_encryption_config(config(keyed("aesgcm", ("c", KEY32)), resources=["*."]))
    assert core.for_resource("configmaps").write_provider == "aesgcm:c"
    assert core.for_resource("deployments", "apps") is IDENTITY


def test_load_yaml_and_json_files(tmp_path):
    yaml_file = tmp_path / "enc.yaml"
    yaml_file.write_text(f"""\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets, configmaps]
    providers:
      - aesgcm:
          keys:
            - name: key1
              secret: {KEY16}
      - identity: {{}}
""")
    parsed = load_encryption_config(yaml_file)
    assert parsed.for_resource("configmaps").write_provider == "aesgcm:key1"
    json_file = tmp_path / "enc.json"
    json_file.write_text(json.dumps(config(keyed("secretbox", ("sb", KEY32)))))
    assert load_encryption_config(json_file).for_resource("secrets").write_provider == \
        "secretbox:sb"
    with pytest.raises(EncryptionConfigError, match="error reading encryption provider"):
        load_encryption_config(tmp_path / "missing.yaml")


P = "resources[0].providers[0]"


@pytest.mark.parametrize(("document", "message"), [
    (config(keyed("aesgcm", ("k", base64.b64encode(b"short").decode()))),
     f'{P}.aesgcm.keys[0].secret: Invalid value: "REDACTED": secret is not of the expected '
     "length, got 5, expected one of [16 24 32]"),
    (config(keyed("aescbc", ("k", base64.b64encode(bytes(20)).decode()))),
     f'{P}.aescbc.keys[0].secret: Invalid value: "REDACTED": secret is not of the expected '
     "length, got 20, expected one of [16 24 32]"),
    (config(keyed("secretbox", ("k", KEY16))),
     f'{P}.secretbox.keys[0].secret: Invalid value: "REDACTED": secret is not of the expected '
     "length, got 16, expected one of [32]"),
    (config({"aesgcm": {"keys": []}}),
     f"{P}.aesgcm.keys: Required value: at least one keys is required"),
    (config(keyed("aesgcm", ("", KEY32))),
     f"{P}.aesgcm.keys[0].name: Required value: name is a mandatory field for a key"),
    (config(keyed("aesgcm", ("k", ""))),
     f"{P}.aesgcm.keys[0].secret: Required value: secret is a mandatory field for a key"),
    (config(keyed("aesgcm", ("k", "not base64!"))),
     f'{P}.aesgcm.keys[0].secret: Invalid value: "REDACTED": secrets must be base64 encoded'),
    (config({}),
     f"{P}: Invalid value: {{}}: provider does not contain any of the expected providers: "
     "KMS, AESGCM, AESCBC, Secretbox, Identity"),
    (config({"identity": {}, **keyed("aesgcm", ("k", KEY32))}),
     f'{P}: Invalid value: ["aesgcm", "identity"]: more than one provider specified in a '
     "single element, should split into different list elements"),
    (config(), "resources[0].providers: Required value: at least one resources[0].providers "
     "is required"),
    (config(IDENTITY_PROVIDER, resources=["secrets", "*."]),
     'resources[0].resources: Invalid value: ["secrets", "*."]: using overlapping resources '
     "such as 'secrets' and '*.' in the same resource list is not allowed as they will be "
     "masked"),
    (config(IDENTITY_PROVIDER, resources=["Secrets"]),
     'resources[0].resources[0]: Invalid value: "Secrets": resource name should not contain '
     "capital letters"),
    ({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
      "resources": []}, "resources: Required value: at least one resources is required"),
])
def test_bad_configs_give_kube_validation_errors(document, message):
    with pytest.raises(EncryptionConfigError) as caught:
        parse_encryption_config(document, source="enc.yaml")
    assert str(caught.value) == f'error while parsing file "enc.yaml": {message}'
    assert "\n" not in str(caught.value)


def test_several_errors_are_listed_on_one_line():
    document = config(keyed("aesgcm", ("", "")))
    with pytest.raises(EncryptionConfigError) as caught:
        parse_encryption_config(document, source="enc.yaml")
    assert str(caught.value) == (
        'error while parsing file "enc.yaml": '
        f"[{P}.aesgcm.keys[0].name: Required value: name is a mandatory field for a key, "
        f"{P}.aesgcm.keys[0].secret: Required value: secret is a mandatory field for a key]")


@pytest.mark.parametrize(("document", "fragment"), [
    (config({"aesgcmm": {"keys": []}}),
     f'strict decoding error: unknown field "{P}.aesgcmm"'),
    (config({"aesgcm": {"keys": [{"name": "k", "secrt": KEY32}]}}),
     f'strict decoding error: unknown field "{P}.aesgcm.keys[0].secrt"'),
    ({**config(IDENTITY_PROVIDER), "kind": "Something"},
     'expected apiVersion "apiserver.config.k8s.io/v1" and kind "EncryptionConfiguration"'),
    ("", 'encryption provider config file "enc.yaml" is empty'),
    ("resources: [unclosed", 'error decoding encryption provider configuration file "enc.yaml"'),
    (config({"kms": {"name": "vault"}}), "keelson has no KMS plugin support"),
])
def test_undecodable_or_unsupported_configs(document, fragment):
    with pytest.raises(EncryptionConfigError) as caught:
        parse_encryption_config(document, source="enc.yaml")
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)
