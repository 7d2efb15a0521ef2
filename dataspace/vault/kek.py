"""Key-encryption keys (KEKs): where they live and how they wrap data keys.

A ``Keyring`` has one active KEK (used to wrap new data keys) and any number of retired ones
(still able to unwrap until rotation has re-wrapped everything). Providers:

- ``file:<dir>``: 0600 key files in a directory, created on first use; the embedded default.
- ``env:<VAR>``: a base64 32-byte key in ``VAR``, retired keys in ``VAR_PREVIOUS``.

A KMS or HashiCorp Vault transit backend slots in as another ``Keyring`` whose ``wrap`` and
``unwrap`` call the service; nothing outside this module knows how a key is wrapped.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured

KEY_BYTES = 32
_WRAP_NONCE = 12


class KeyUnwrapError(Exception):
    """A wrapped key failed authentication (tampered, or bound to another record)."""


class UnknownKekError(Exception):
    """A wrapped key names a KEK this keyring does not hold."""


def kek_fingerprint(key: bytes) -> str:
    # A one-way, domain-separated id: safe to store and print, useless for recovering the key.
    return hashlib.sha256(b"redlake-kek-id\x00" + key).hexdigest()[:16]


def _wrap(kek: bytes, data_key: bytes, context: bytes) -> bytes:
    nonce = os.urandom(_WRAP_NONCE)
    return nonce + AESGCM(kek).encrypt(nonce, data_key, context)


def _unwrap(kek: bytes, wrapped: bytes, context: bytes) -> bytes:
    try:
        return AESGCM(kek).decrypt(wrapped[:_WRAP_NONCE], wrapped[_WRAP_NONCE:], context)
    except InvalidTag:
        raise KeyUnwrapError("wrapped key failed authentication") from None


class Keyring(Protocol):
    def active_id(self) -> str: ...

    def wrap(self, data_key: bytes, *, context: bytes) -> tuple[str, bytes]:
        """Wraps under the active KEK; returns (kek id, wrapped bytes)."""
        ...

    def unwrap(self, kek_id: str, wrapped: bytes, *, context: bytes) -> bytes: ...

    def rotate(self) -> str:
        """Makes a new KEK active (where the provider can create one); returns its id."""
        ...


class _StaticKeyring:
    """Shared logic for providers that hold raw KEK bytes locally."""

    def __init__(self, active: bytes, retired: list[bytes]):
        self._keys = {kek_fingerprint(k): k for k in [*retired, active]}
        self._active = kek_fingerprint(active)

    def active_id(self) -> str:
        return self._active

    def wrap(self, data_key: bytes, *, context: bytes) -> tuple[str, bytes]:
        return self._active, _wrap(self._keys[self._active], data_key, context)

    def unwrap(self, kek_id: str, wrapped: bytes, *, context: bytes) -> bytes:
        if kek_id not in self._keys:
            raise UnknownKekError(f"no key-encryption key with id {kek_id}")
        return _unwrap(self._keys[kek_id], wrapped, context)


class FileKeyring(_StaticKeyring):
    """KEKs as 0600 files ``<id>.key`` in a 0700 directory; ``ACTIVE`` names the active one."""

    def __init__(self, directory: Path):
        self._dir = directory
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        active_file = self._dir / "ACTIVE"
        if not active_file.exists():
            self._create_key()
        active_id = active_file.read_text().strip()
        keys = {p.stem: p.read_bytes() for p in self._dir.glob("*.key")}
        if active_id not in keys:
            raise ImproperlyConfigured(f"vault keyring {self._dir}: active KEK {active_id} is missing")
        super().__init__(keys[active_id], [k for i, k in keys.items() if i != active_id])

    def _create_key(self) -> str:
        key = os.urandom(KEY_BYTES)
        kek_id = kek_fingerprint(key)
        path = self._dir / f"{kek_id}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        tmp = self._dir / "ACTIVE.tmp"
        tmp.write_text(kek_id)
        tmp.replace(self._dir / "ACTIVE")
        return kek_id

    def rotate(self) -> str:
        new_id = self._create_key()
        key = (self._dir / f"{new_id}.key").read_bytes()
        self._keys[new_id] = key
        self._active = new_id
        return new_id


class EnvKeyring(_StaticKeyring):
    """KEK from ``VAR`` (base64); retired keys from ``VAR_PREVIOUS`` (comma-separated)."""

    def __init__(self, variable: str):
        self._variable = variable
        active = self._decode(os.environ.get(variable, ""), variable)
        previous = [p for p in os.environ.get(f"{variable}_PREVIOUS", "").split(",") if p.strip()]
        super().__init__(active, [self._decode(p, f"{variable}_PREVIOUS") for p in previous])

    @staticmethod
    def _decode(value: str, name: str) -> bytes:
        try:
            key = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            key = b""
        if len(key) != KEY_BYTES:
            raise ImproperlyConfigured(f"{name} must hold a base64-encoded {KEY_BYTES}-byte key")
        return key

    def rotate(self) -> str:
        # The environment is the operator's to change: they set a new key in VAR and move the old
        # one to VAR_PREVIOUS; rotation then only re-wraps.
        return self._active


def keyring_from_setting(spec: str) -> Keyring:
    scheme, _, target = spec.partition(":")
    if scheme == "file" and target:
        return FileKeyring(Path(target))
    if scheme == "env" and target:
        return EnvKeyring(target)
    raise ImproperlyConfigured(f"VAULT_KEK={spec!r}: expected 'file:<directory>' or 'env:<VARIABLE>'")
