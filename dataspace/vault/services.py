"""The vault's public surface: data keys, sealed blobs, sealed secrets and root-key rotation.

Invariants kept here: a plaintext data key exists only in memory, and content reaches storage
only sealed (AES-256-GCM under that data key). Each data key is wrapped by the root key of its
purpose's keyring (``dataspace.roles.Keyring``): wrapping needs only that keyring's public half,
unwrapping its private half, which a process holds only where its role allows it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dataspace import roles
from dataspace.errors import DomainError, ErrorCode
from dataspace.roles import Keyring as KeyringName
from dataspace.vault import blobs, kek
from dataspace.vault.keyrings import (
    KEY_BYTES,
    KeyringNotHeld,
    KeyUnwrapError,
    PublicKeyring,
    RootKeyring,
    UnknownKekError,
    keyring_from_spec,
    public_keyring_from_spec,
)
from dataspace.vault.models import DataKey
from dataspace.vault.stream import BlobTamperedError, OpeningReader, SealingWriter

__all__ = ["KeyringName", "KeyringNotHeld"]

logger = logging.getLogger(__name__)

# Which keyring wraps the data keys of each purpose (DataKey.purpose).
PURPOSE_KEYRINGS: dict[str, KeyringName] = {
    "dataset": KeyringName.DATA,
    "ckks-secret": KeyringName.CKKS,
    "wallet": KeyringName.WALLET,
    "receipt-key": KeyringName.RECEIPT,
}


class VaultIntegrityError(DomainError):
    """Stored key material or content failed authentication. Never read past it."""


class KeyringUnavailable(DomainError):
    """This process's role does not hold the keyring a key needs (or holds only its public half)."""

    code = ErrorCode.KEYRING_NOT_HELD


@lru_cache(maxsize=16)
def _keyring_for(spec: str) -> RootKeyring:
    return keyring_from_spec(spec)


# Opening a keyring costs ~85 ms per RSA-3072 key (cryptography checks each private key's
# consistency as it loads it). A task that needs a keyring while ``keyrings_warm`` is opening it
# waits for that load rather than running a second one beside it.
_opening = threading.Lock()


def _held_keyring_for(spec: str) -> RootKeyring:
    with _opening:
        return _keyring_for(spec)


@lru_cache(maxsize=16)
def _public_keyring_for(spec: str, name: str) -> PublicKeyring:
    return public_keyring_from_spec(spec, name=name)


def held_spec(name: KeyringName) -> str:
    held = roles.held_keyring_specs(explicit=settings.REDLAKE_KEYRINGS, vault_kek=settings.VAULT_KEK)
    return held[name][0] if name in held else ""


def keyring(name: KeyringName = KeyringName.DATA) -> RootKeyring:
    """The keyring with its private half; ``KeyringUnavailable`` where this process may not hold it."""
    spec = held_spec(name)
    if not spec:
        raise KeyringUnavailable(
            f"This process (role {settings.REDLAKE_ROLE}) does not hold the {name} keyring.",
            details={"keyring": str(name), "role": settings.REDLAKE_ROLE},
        )
    return _held_keyring_for(spec)


_held_keyring = keyring  # for functions whose keyword argument is named ``keyring``


def sealing_keyring(name: KeyringName = KeyringName.DATA) -> RootKeyring:
    """What new keys of this purpose are wrapped to: the held keyring, or its public half alone."""
    if spec := held_spec(name):
        return _held_keyring_for(spec)
    public = settings.REDLAKE_KEYRINGS_PUBLIC.get(str(name), "")
    if not public:
        raise KeyringUnavailable(
            f"This process (role {settings.REDLAKE_ROLE}) has no public half of the {name} keyring to seal to "
            f"(set REDLAKE_KEYRING_{name.name}_PUBLIC).",
            details={"keyring": str(name), "role": settings.REDLAKE_ROLE},
        )
    return _public_keyring_for(public, str(name))


@lru_cache(maxsize=4)
def _legacy_for(spec: str) -> kek.LegacyKeyring | None:
    return kek.legacy_keyring_from_setting(spec)


def _legacy() -> kek.LegacyKeyring | None:
    """The single pre-hierarchy KEK (one AES key for every purpose), kept only to unwrap keys
    stored before it and re-wrap them on rotation; only the dev role may hold it."""
    return _legacy_for(settings.VAULT_KEK) if settings.VAULT_KEK else None


def _context(data_key_id: uuid.UUID) -> bytes:
    return b"redlake-data-key\x00" + data_key_id.bytes


@dataclass(frozen=True)
class NewDataKey:
    """A data key not yet saved: the wrapped form is what gets stored."""

    id: uuid.UUID
    plaintext: bytes
    kek_id: str
    wrapped: bytes
    keyring: KeyringName = KeyringName.DATA


def data_key_generate(*, keyring: KeyringName = KeyringName.DATA) -> NewDataKey:
    """A fresh data key wrapped to the keyring's public half: no private key is needed to seal."""
    key_id = uuid.uuid4()
    plaintext = os.urandom(KEY_BYTES)
    kek_id, wrapped = sealing_keyring(keyring).wrap(plaintext, context=_context(key_id))
    return NewDataKey(id=key_id, plaintext=plaintext, kek_id=kek_id, wrapped=wrapped, keyring=keyring)


def data_key_save(*, new_key: NewDataKey, purpose: str) -> DataKey:
    return DataKey.objects.create(
        id=new_key.id, purpose=purpose, keyring=new_key.keyring, kek_id=new_key.kek_id, wrapped_key=new_key.wrapped
    )


def _unwrap(name: KeyringName, kek_id: str, wrapped: bytes, *, context: bytes, what: str) -> bytes:
    try:
        ring = keyring(name)
        legacy = _legacy() if not ring.knows(kek_id) else None
        if legacy is not None and legacy.knows(kek_id):
            return legacy.unwrap(kek_id, wrapped, context=context)
        return ring.unwrap(kek_id, wrapped, context=context)
    except (KeyUnwrapError, kek.KeyUnwrapError):
        raise VaultIntegrityError(f"{what} failed authentication", code=ErrorCode.KEY_TAMPERED) from None
    except (UnknownKekError, kek.UnknownKekError) as exc:
        raise VaultIntegrityError(str(exc), code=ErrorCode.KEK_UNKNOWN) from None


def data_key_unwrap(data_key: DataKey) -> bytes:
    # The root id and the wrapped key are read together, fresh: a rotation rewrites both, and an
    # instance loaded before it (its key-material column deferred, so ``refresh_from_db`` leaves
    # it alone) would pair a new root id with the old wrap.
    name = KeyringName(data_key.keyring)
    keyring(name)  # a process without this keyring is refused before it reads any key material
    stored = DataKey.objects.filter(pk=data_key.pk).values_list("kek_id", "wrapped_key").first()
    kek_id, wrapped = stored if stored is not None else (data_key.kek_id, data_key.wrapped_key)
    return _unwrap(
        name,
        kek_id,
        bytes(wrapped),
        context=_context(data_key.id),
        what=f"wrapped data key {data_key.id}",
    )


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

    def _tampered(self, message: str) -> Exception:
        return VaultIntegrityError(message, code=ErrorCode.BLOB_TAMPERED)


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
    new_key = data_key_generate(keyring=PURPOSE_KEYRINGS[purpose])
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


# Sealed files (the custodian's receipt key): a secret with its wrapped data key beside it, for
# secrets a role keeps outside the database.


def _file_context(name: KeyringName, path: Path) -> bytes:
    return b"redlake-sealed-file\x00" + str(name).encode() + b"\x00" + path.name.encode()


def sealed_file_write(*, path: Path, plaintext: bytes, keyring: KeyringName) -> bool:
    """Seals ``plaintext`` into ``path`` (0600) unless the file exists; returns whether it wrote."""
    data_key = os.urandom(KEY_BYTES)
    kek_id, wrapped = sealing_keyring(keyring).wrap(data_key, context=_file_context(keyring, path))
    nonce = os.urandom(12)
    body = {
        "keyring": str(keyring),
        "kek_id": kek_id,
        "wrapped_key": base64.b64encode(wrapped).decode(),
        "sealed": base64.b64encode(nonce + AESGCM(data_key).encrypt(nonce, plaintext, path.name.encode())).decode(),
    }
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(body))
    return True


def _sealed_file_parts(path: Path) -> dict[str, str]:
    parts: dict[str, str] = json.loads(path.read_text())
    return parts


def sealed_file_read(*, path: Path, keyring: KeyringName) -> bytes:
    body = _sealed_file_parts(path)
    data_key = _unwrap(
        keyring,
        body["kek_id"],
        base64.b64decode(body["wrapped_key"]),
        context=_file_context(keyring, path),
        what=f"sealed file {path.name}",
    )
    sealed = base64.b64decode(body["sealed"])
    try:
        return AESGCM(data_key).decrypt(sealed[:12], sealed[12:], path.name.encode())
    except InvalidTag:
        raise VaultIntegrityError(
            f"sealed file {path.name} failed authentication", code=ErrorCode.BLOB_TAMPERED
        ) from None


def _sealed_file_rewrap(*, path: Path, keyring: KeyringName, ring: RootKeyring) -> bool:
    body = _sealed_file_parts(path)
    if body["kek_id"] == ring.active_id():
        return False
    context = _file_context(keyring, path)
    data_key = _unwrap(keyring, body["kek_id"], base64.b64decode(body["wrapped_key"]), context=context, what=path.name)
    kek_id, wrapped = ring.wrap(data_key, context=context)
    body.update(kek_id=kek_id, wrapped_key=base64.b64encode(wrapped).decode())
    tmp = path.with_suffix(".rewrap")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(body))
    tmp.replace(path)
    return True


def sealed_files(name: KeyringName) -> list[Path]:
    """The sealed files a keyring wraps (rotation re-wraps them with the database's keys)."""
    if name == KeyringName.RECEIPT:
        path = Path(settings.RECEIPT_KEY_FILE)
        return [path] if path.exists() else []
    return []


@dataclass(frozen=True)
class RotationReport:
    keyring: str
    active_kek_id: str
    rewrapped: int


def kek_rotate(
    *, keyring: KeyringName = KeyringName.DATA, create_new: bool = True, batch_size: int = 500
) -> RotationReport:
    """Makes a new root key of one keyring active (where the backend can) and re-wraps every
    data key (and sealed file) that keyring wraps under it.

    Content is never re-encrypted: only the wrapped keys change. Retired root keys stay able to
    unwrap, so a key wrapped to the old public half while this runs (an upload in flight, a web
    process not yet given the new public half) is never lost; a later run re-wraps it. Safe to
    re-run after a crash: keys already under the active root are skipped.
    """
    name = keyring
    ring = _held_keyring(name)
    active = ring.rotate() if create_new else ring.active_id()
    rewrapped = 0
    while True:
        with transaction.atomic():
            # ISSUE-12 custody: defer(None) loads the wrapped keys the manager leaves out by default.
            batch = list(
                DataKey.objects.defer(None)
                .select_for_update()
                .filter(keyring=name)
                .exclude(kek_id=active)
                .order_by("id")[:batch_size]
            )
            if not batch:
                break
            for data_key in batch:
                plaintext = data_key_unwrap(data_key)
                data_key.kek_id, data_key.wrapped_key = ring.wrap(plaintext, context=_context(data_key.id))
                data_key.rewrapped_at = timezone.now()
            DataKey.objects.bulk_update(batch, ["kek_id", "wrapped_key", "rewrapped_at"])
            rewrapped += len(batch)
    for path in sealed_files(name):
        rewrapped += _sealed_file_rewrap(path=path, keyring=name, ring=ring)
    return RotationReport(keyring=str(name), active_kek_id=active, rewrapped=rewrapped)


def keyrings_warm() -> list[str]:
    """Opens every keyring whose private half this process holds, the ``VAULT_KEK`` development
    shorthand's included (creating its files, as first use would), so that a worker's first job
    does not pay for it. Returns their names."""
    opened = []
    for name in KeyringName:
        if spec := held_spec(name):
            _held_keyring_for(spec)
            opened.append(str(name))
    return opened


def keyrings_warm_logged() -> None:
    """``keyrings_warm``, its outcome logged: what a worker process runs as it starts."""
    started = time.monotonic()
    try:
        opened = keyrings_warm()
    except Exception:  # the first task that needs the keyring raises the same error, to its caller
        logger.warning("opening the keyrings ahead of the first task failed", exc_info=True)
        return
    logger.info(
        "keyrings opened ahead of the first task: %s (%.0f ms)",
        ", ".join(opened) or "none held",
        (time.monotonic() - started) * 1000,
    )


def keyrings_check_at_startup() -> None:
    """Opens every keyring this process was given explicitly (ImproperlyConfigured on a missing
    token, a wrong PIN, an unreadable key) and every public half it may seal with. The
    ``VAULT_KEK`` development shorthand is left to first use, which creates its files."""
    for name in KeyringName:
        if spec := settings.REDLAKE_KEYRINGS.get(str(name), ""):
            _held_keyring_for(spec)
        if (public := settings.REDLAKE_KEYRINGS_PUBLIC.get(str(name), "")) and not held_spec(name):
            _public_keyring_for(public, str(name))
