"""Encryption at rest as a storage wrapper: values under chosen prefixes are transformed.

Why a wrapper: kube-apiserver encrypts in its etcd3 store, below the watch cache and the
REST store, so nothing above storage knows values are encrypted. :class:`TransformingStorage`
sits in the same place around any :class:`~apiserver.storage.interface.Storage`: every
value written under a configured key prefix (``/registry/core/secrets/`` for ``secrets``)
goes through the resource's :class:`~apiserver.storage.encryption.Transformer` with the
storage key as context (authenticated by ``aesgcm``), and every value read back — by
``get``, ``range``, ``delete``, in watch events and in a lost compare-and-swap — is
decrypted. Keys under no configured prefix pass through untouched.

Key rotation ("rotation re-encrypts on write", as in kube): a value that could only be
read with a key other than the first is *stale*. Writes always use the first key, so the
next write of that key re-encrypts it; :meth:`needs_rewrite` tells the REST store that
such a key must be written even when the update changes nothing, which is how
``kubectl get secrets -A -o json | kubectl replace -f -`` re-encrypts everything after a
new key is put first (kube's GuaranteedUpdate does the same for stale reads).

A value no configured key can read raises :class:`UndecryptableValueError` (a
``StorageError``) naming the key: at start-up that stops the apiserver with one line
saying which object and which keys were tried, instead of serving it wrongly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from apiserver.storage.encryption import DecryptionError, Transformer
from apiserver.storage.interface import (
    ConflictError,
    KeyValue,
    RangeResult,
    Storage,
    StorageError,
    StorageEvent,
)

__all__ = ["TransformingStorage", "UndecryptableValueError"]


class UndecryptableValueError(StorageError):
    """A stored value that no configured key decrypts."""

    def __init__(self, key: str, error: DecryptionError) -> None:
        super().__init__(f"cannot decrypt the stored value of {key}: {error} (is the key that "
                         f"wrote it still listed in --encryption-provider-config? values "
                         f"written before encryption was enabled need an 'identity' provider)")
        self.key = key


class TransformingStorage(Storage):
    """``inner`` with the values under each prefix of ``transformers`` encrypted at rest."""

    def __init__(self, inner: Storage, transformers: Mapping[str, Transformer]) -> None:
        self.inner = inner
        # Longest prefix first, so a more specific prefix wins.
        self._transformers = sorted(transformers.items(), key=lambda item: -len(item[0]))
        self._stale: set[str] = set()

    def transformer_for(self, key: str) -> Transformer | None:
        for prefix, transformer in self._transformers:
            if key.startswith(prefix):
                return transformer
        return None

    def needs_rewrite(self, key: str) -> bool:
        return key in self._stale

    # --- value transformation ------------------------------------------------------

    def _encrypt(self, key: str, value: bytes) -> bytes:
        transformer = self.transformer_for(key)
        return value if transformer is None else transformer.encrypt(value, key)

    def _decrypt_value(self, key: str, value: bytes, *, current: bool) -> bytes:
        transformer = self.transformer_for(key)
        if transformer is None:
            return value
        try:
            plaintext, stale = transformer.decrypt(value, key)
        except DecryptionError as error:
            raise UndecryptableValueError(key, error) from None
        if current:  # only the stored value decides what needs rewriting
            if stale:
                self._stale.add(key)
            else:
                self._stale.discard(key)
        return plaintext

    def _decrypt(self, kv: KeyValue | None, *, current: bool = True) -> KeyValue | None:
        if kv is None:
            return None
        return KeyValue(kv.key, self._decrypt_value(kv.key, kv.value, current=current),
                        kv.create_revision, kv.mod_revision)

    def _written(self, kv: KeyValue, plaintext: bytes) -> KeyValue:
        """What a write returns: the stored value as the caller gave it."""
        self._stale.discard(kv.key)
        return KeyValue(kv.key, plaintext, kv.create_revision, kv.mod_revision)

    # --- Storage -------------------------------------------------------------------

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def current_revision(self) -> int:
        return await self.inner.current_revision()

    async def compacted_revision(self) -> int:
        return await self.inner.compacted_revision()

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)

    async def get(self, key: str) -> KeyValue | None:
        return self._decrypt(await self.inner.get(key))

    async def range(self, prefix: str, *, start_after: str | None = None,
                    limit: int = 0) -> RangeResult:
        result = await self.inner.range(prefix, start_after=start_after, limit=limit)
        kvs = [kv for kv in (self._decrypt(kv) for kv in result.kvs) if kv is not None]
        return RangeResult(kvs, result.revision, result.more)

    async def create(self, key: str, value: bytes) -> KeyValue:
        return self._written(await self.inner.create(key, self._encrypt(key, value)), value)

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int) -> KeyValue:
        try:
            kv = await self.inner.update(key, self._encrypt(key, value),
                                         expected_mod_revision=expected_mod_revision)
        except ConflictError as error:
            raise ConflictError(key, self._decrypt(error.current)) from None
        return self._written(kv, value)

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> KeyValue:
        try:
            kv = await self.inner.delete(key, expected_mod_revision=expected_mod_revision)
        except ConflictError as error:
            raise ConflictError(key, self._decrypt(error.current)) from None
        self._stale.discard(key)
        decrypted = self._decrypt(kv, current=False)
        assert decrypted is not None
        return decrypted

    def watch(self, *, from_revision: int, prefix: str = "") -> AsyncIterator[StorageEvent]:
        return self._watch(from_revision, prefix)

    async def _watch(self, from_revision: int, prefix: str) -> AsyncIterator[StorageEvent]:
        async for event in self.inner.watch(from_revision=from_revision, prefix=prefix):
            kv = self._decrypt(event.kv, current=event.type == "PUT")
            if event.type == "DELETE":
                self._stale.discard(event.kv.key)
            assert kv is not None
            yield StorageEvent(event.type, kv, self._decrypt(event.prev, current=False))
