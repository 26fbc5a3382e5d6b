"""Encryption at rest as a storage wrapper, on a real SQLite file: what is on disk, what
every read returns, and key rotation (stale values are rewritten with the first key)."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from apiserver.storage.encryption import parse_encryption_config
from apiserver.storage.interface import ConflictError
from apiserver.storage.sqlite import SQLiteStorage
from apiserver.storage.transforming import TransformingStorage, UndecryptableValueError

SECRETS = "/registry/core/secrets/"
PODS = "/registry/core/pods/"
KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()
PLAINTEXT = b'{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}'


def transformer(*providers: dict):
    return parse_encryption_config({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": list(providers)}],
    }).for_resource("secrets")


def aesgcm(*names_and_keys: tuple[str, str]) -> dict:
    return {"aesgcm": {"keys": [{"name": n, "secret": k} for n, k in names_and_keys]}}


@pytest.fixture
async def inner(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    storage = SQLiteStorage(tmp_path / "state.db", compact_interval=0)
    await storage.open()
    yield storage
    await storage.close()


def on_disk(path: Path, key: str) -> bytes:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()[0]


def history(path: Path) -> list[bytes]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT value FROM history")]


async def test_values_under_the_prefix_are_encrypted_on_disk_and_read_back_plain(
        inner: SQLiteStorage, tmp_path: Path) -> None:
    store = TransformingStorage(inner, {SECRETS: transformer(aesgcm(("k1", KEY_A)))})
    created = await store.create(SECRETS + "default/db", PLAINTEXT)
    await store.create(PODS + "default/web", b'{"kind":"Pod"}')

    assert created.value == PLAINTEXT
    raw = on_disk(tmp_path / "state.db", SECRETS + "default/db")
    assert raw.startswith(b"k8s:enc:aesgcm:v1:k1:") and b"hunter2" not in raw
    assert b"aHVudGVyMg" not in raw
    assert on_disk(tmp_path / "state.db", PODS + "default/web") == b'{"kind":"Pod"}'
    assert not any(b"aHVudGVyMg" in value for value in history(tmp_path / "state.db"))
    assert (await store.get(SECRETS + "default/db")).value == PLAINTEXT
    listed = await store.range("/registry/core/")
    assert [kv.value for kv in listed.kvs] == [b'{"kind":"Pod"}', PLAINTEXT]


async def test_updates_deletes_conflicts_and_watch_events_are_decrypted(
        inner: SQLiteStorage) -> None:
    store = TransformingStorage(inner, {SECRETS: transformer(aesgcm(("k1", KEY_A)))})
    key = SECRETS + "default/db"
    first = await store.create(key, b"one")
    events = store.watch(from_revision=first.mod_revision, prefix=SECRETS)
    second = await store.update(key, b"two", expected_mod_revision=first.mod_revision)
    with pytest.raises(ConflictError) as caught:
        await store.update(key, b"three", expected_mod_revision=first.mod_revision)
    assert caught.value.current is not None and caught.value.current.value == b"two"
    deleted = await store.delete(key, expected_mod_revision=second.mod_revision)
    assert deleted.value == b"two"

    seen = []
    async with asyncio.timeout(5):
        async for event in events:
            seen.append((event.type, event.kv.value, event.prev.value if event.prev else None))
            if len(seen) == 3:
                break
    assert seen == [("PUT", b"one", None), ("PUT", b"two", b"one"),
                    ("DELETE", b"two", b"two")]


async def test_rotation_reads_the_old_key_and_rewrites_with_the_new_one(
        inner: SQLiteStorage, tmp_path: Path) -> None:
    key = SECRETS + "default/db"
    old = TransformingStorage(inner, {SECRETS: transformer(aesgcm(("k1", KEY_A)))})
    created = await old.create(key, PLAINTEXT)

    # The new key first, the old one still listed: the value reads, and is stale.
    rotated = TransformingStorage(inner, {SECRETS: transformer(aesgcm(("k2", KEY_B),
                                                                       ("k1", KEY_A)))})
    assert not rotated.needs_rewrite(key)
    assert (await rotated.get(key)).value == PLAINTEXT
    assert rotated.needs_rewrite(key)
    await rotated.update(key, PLAINTEXT, expected_mod_revision=created.mod_revision)
    assert on_disk(tmp_path / "state.db", key).startswith(b"k8s:enc:aesgcm:v1:k2:")
    assert not rotated.needs_rewrite(key)

    # Once every value is rewritten, the old key can go.
    only_new = TransformingStorage(inner, {SECRETS: transformer(aesgcm(("k2", KEY_B)))})
    assert (await only_new.get(key)).value == PLAINTEXT


async def test_a_value_no_key_can_read_is_an_error_naming_the_object(
        inner: SQLiteStorage) -> None:
    key = SECRETS + "default/db"
    await TransformingStorage(inner, {SECRETS: transformer(aesgcm(("k1", KEY_A)))}).create(
        key, PLAINTEXT)
    wrong = TransformingStorage(inner, {SECRETS: transformer(aesgcm(("k2", KEY_B)))})
    with pytest.raises(UndecryptableValueError, match=f"cannot decrypt the stored value of "
                                                      f"{key}"):
        await wrong.get(key)


async def test_identity_first_reads_old_ciphertext_and_plaintext_written_before(
        inner: SQLiteStorage, tmp_path: Path) -> None:
    plain_key, secret_key = SECRETS + "default/plain", SECRETS + "default/enc"
    await inner.create(plain_key, b"written before encryption")
    await TransformingStorage(inner, {SECRETS: transformer(aesgcm(("k1", KEY_A)))}).create(
        secret_key, PLAINTEXT)

    decrypting = TransformingStorage(inner, {SECRETS: transformer({"identity": {}},
                                                                  aesgcm(("k1", KEY_A)))})
    values = {kv.key: kv.value for kv in (await decrypting.range(SECRETS)).kvs}
    assert values == {plain_key: b"written before encryption", secret_key: PLAINTEXT}
    assert decrypting.needs_rewrite(secret_key) and not decrypting.needs_rewrite(plain_key)
