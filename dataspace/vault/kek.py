"""The single key-encryption key of before the key hierarchy (issue 12), kept to unwrap only.

Until issue 12 one AES-256 KEK wrapped every data key (datasets, CKKS secrets, wallets). Keys it
wrapped still unwrap with it, and ``manage.py vault rotate-kek --keyring <name>`` re-wraps them
under their purpose's root key (``keyrings.py``); once every keyring has been rotated, the old
KEK can be destroyed. It is read where ``VAULT_KEK`` still points at it, never created:

- ``file:<dir>``: the 0600 ``<id>.key`` files of a directory with an ``ACTIVE`` file.
- ``env:<VAR>``: a base64 32-byte key in ``VAR``, older ones in ``VAR_PREVIOUS``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
_WRAP_NONCE = 12


class KeyUnwrapError(Exception):
    """A wrapped key failed authentication (tampered, or bound to another record)."""


class UnknownKekError(Exception):
    """A wrapped key names a KEK this keyring does not hold."""


def kek_fingerprint(key: bytes) -> str:
    # A one-way, domain-separated id: safe to store and print, useless for recovering the key.
    return hashlib.sha256(b"redlake-kek-id\x00" + key).hexdigest()[:16]


def wrap_legacy(kek: bytes, data_key: bytes, context: bytes) -> bytes:
    """The old wrap (AES-GCM under the KEK); tests use it to make keys as they were stored."""
    nonce = os.urandom(_WRAP_NONCE)
    return nonce + AESGCM(kek).encrypt(nonce, data_key, context)


class LegacyKeyring:
    def __init__(self, keys: list[bytes]):
        self._keys = {kek_fingerprint(k): k for k in keys}

    def knows(self, kek_id: str) -> bool:
        return kek_id in self._keys

    def unwrap(self, kek_id: str, wrapped: bytes, *, context: bytes) -> bytes:
        if kek_id not in self._keys:
            raise UnknownKekError(f"no key-encryption key with id {kek_id}")
        try:
            return AESGCM(self._keys[kek_id]).decrypt(wrapped[:_WRAP_NONCE], wrapped[_WRAP_NONCE:], context)
        except InvalidTag:
            raise KeyUnwrapError("wrapped key failed authentication") from None


def _decode(value: str) -> bytes | None:
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        return None
    return key if len(key) == KEY_BYTES else None


def legacy_keyring_from_setting(spec: str) -> LegacyKeyring | None:
    """The old KEKs ``VAULT_KEK`` names, or None where there are none (a fresh space)."""
    scheme, _, target = spec.partition(":")
    keys: list[bytes] = []
    if scheme == "file" and target:
        directory = Path(target)
        if (directory / "ACTIVE").exists():
            keys = [p.read_bytes() for p in directory.glob("*.key")]
    elif scheme == "env" and target:
        values = [os.environ.get(target, ""), *os.environ.get(f"{target}_PREVIOUS", "").split(",")]
        keys = [key for value in values if value.strip() and (key := _decode(value)) is not None]
    return LegacyKeyring(keys) if keys else None
