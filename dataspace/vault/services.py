"""The vault's public surface: data keys, sealed blobs, sealed secrets and KEK rotation.

Invariant kept here: a plaintext data key exists only in memory, and content reaches storage only
sealed (AES-256-GCM under that data key).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dataspace.errors import DomainError, ErrorCode
from dataspace.vault import blobs
from dataspace.vault.kek import KEY_BYTES, Keyring, KeyUnwrapError, UnknownKekError, keyring_from_setting
from dataspace.vault.models import DataKey
from dataspace.vault.stream import BlobTamperedError, OpeningReader, SealingWriter


class VaultIntegrityError(DomainError):
    """Stored key material or content failed authentication. Never read past it."""


@lru_cache(maxsize=4)
def _keyring_for(spec: str) -> Keyring:
    return keyring_from_setting(spec)


def keyring() -> Keyring:
    return _keyring_for(settings.VAULT_KEK)


def _context(data_key_id: uuid.UUID) -> bytes:
    return b"redlake-data-key\x00" + data_key_id.bytes


@dataclass(frozen=True)
class NewDataKey:
    """A data key not yet saved: the wrapped form is what gets stored."""

    id: uuid.UUID
    plaintext: bytes
    kek_id: str
    wrapped: bytes


def data_key_generate() -> NewDataKey:
    key_id = uuid.uuid4()
    plaintext = os.urandom(KEY_BYTES)
    kek_id, wrapped = keyring().wrap(plaintext, context=_context(key_id))
    return NewDataKey(id=key_id, plaintext=plaintext, kek_id=kek_id, wrapped=wrapped)


def data_key_save(*, new_key: NewDataKey, purpose: str) -> DataKey:
    return DataKey.objects.create(id=new_key.id, purpose=purpose, kek_id=new_key.kek_id, wrapped_key=new_key.wrapped)


def data_key_unwrap(data_key: DataKey) -> bytes:
    try:
        return keyring().unwrap(data_key.kek_id, bytes(data_key.wrapped_key), context=_context(data_key.id))
    except KeyUnwrapError:
        raise VaultIntegrityError(
            f"wrapped data key {data_key.id} failed authentication", code=ErrorCode.KEY_TAMPERED
        ) from None
    except UnknownKekError as exc:
        raise VaultIntegrityError(str(exc), code=ErrorCode.KEK_UNKNOWN) from None


class BlobSealer:
    """Streams plaintext into a new sealed blob. Use as a context manager: on error the partial
    blob is deleted, so a failed upload leaves nothing behind."""

    def __init__(self, *, key: bytes, blob_name: str):
        self.blob_name = blob_name
        self._sink = blobs.open_for_write(blob_name)
        self._writer = SealingWriter(self._sink, key=key, blob_name=blob_name, chunk_size=settings.VAULT_CHUNK_SIZE)

    @property
    def plain_bytes(self) -> int:
        return self._writer.plain_bytes

    def write(self, data: bytes | memoryview) -> None:
        self._writer.write(data)

    def finish(self) -> None:
        self._writer.close()
        self._sink.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._sink.close()
        blob_delete(self.blob_name)

    def __enter__(self) -> BlobSealer:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()


def blob_open(*, blob_name: str, key: bytes) -> OpeningReader:
    """A seekable plaintext view of a sealed blob; every chunk read is authenticated."""
    source = blobs.open_for_read(blob_name)
    try:
        return _ReaderWithIntegrityErrors(source, key=key, blob_name=blob_name, sealed_length=blobs.size(blob_name))
    except BlobTamperedError as exc:
        source.close()
        raise VaultIntegrityError(f"blob {blob_name}: {exc}", code=ErrorCode.BLOB_TAMPERED) from None


class _ReaderWithIntegrityErrors(OpeningReader):
    """Turns the stream's tamper signal into the vault's domain error."""

    def _chunk(self, index: int) -> bytes:
        try:
            return super()._chunk(index)
        except BlobTamperedError as exc:
            raise VaultIntegrityError(str(exc), code=ErrorCode.BLOB_TAMPERED) from None


def blob_verify(*, blob_name: str, key: bytes) -> int:
    """Authenticates every chunk of a blob; returns its plaintext size."""
    with blob_open(blob_name=blob_name, key=key) as reader:
        for _ in reader.iter_chunks():
            pass
        return reader.size


def blob_delete(blob_name: str) -> None:
    if blobs.exists(blob_name):
        blobs.delete(blob_name)


# Small secrets (custodial wallet keys): one data key each, the ciphertext kept by the caller.


def secret_seal(*, plaintext: bytes, purpose: str) -> tuple[DataKey, bytes]:
    new_key = data_key_generate()
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(new_key.plaintext).encrypt(nonce, plaintext, new_key.id.bytes)
    return data_key_save(new_key=new_key, purpose=purpose), sealed


def secret_open(*, data_key: DataKey, sealed: bytes) -> bytes:
    key = data_key_unwrap(data_key)
    try:
        return AESGCM(key).decrypt(sealed[:12], sealed[12:], data_key.id.bytes)
    except InvalidTag:
        raise VaultIntegrityError(
            f"sealed secret under data key {data_key.id} failed authentication", code=ErrorCode.BLOB_TAMPERED
        ) from None


@dataclass(frozen=True)
class RotationReport:
    active_kek_id: str
    rewrapped: int


def kek_rotate(*, create_new: bool = True, batch_size: int = 500) -> RotationReport:
    """Makes a new KEK active (where the provider can) and re-wraps every data key under it.

    Content is never re-encrypted: only the 60-byte wrapped keys change. Safe to re-run after a
    crash: keys already under the active KEK are skipped.
    """
    ring = keyring()
    active = ring.rotate() if create_new else ring.active_id()
    rewrapped = 0
    while True:
        with transaction.atomic():
            # ISSUE-12 custody: defer(None) loads the wrapped keys the manager leaves out by default.
            rows = DataKey.objects.defer(None).select_for_update().exclude(kek_id=active).order_by("id")
            batch = list(rows[:batch_size])
            if not batch:
                break
            for data_key in batch:
                plaintext = data_key_unwrap(data_key)
                data_key.kek_id, data_key.wrapped_key = ring.wrap(plaintext, context=_context(data_key.id))
                data_key.rewrapped_at = timezone.now()
            DataKey.objects.bulk_update(batch, ["kek_id", "wrapped_key", "rewrapped_at"])
            rewrapped += len(batch)
    return RotationReport(active_kek_id=active, rewrapped=rewrapped)
