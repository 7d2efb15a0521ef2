"""Attestation nonces: issued by the custodian, single use, expiring.

``verify`` only checks that the evidence binds the nonce it is given; that the nonce was issued
here, is still fresh and is used once is this store's job. Consume the nonce *before* verifying,
so a failed attempt burns it too and cannot be retried against the same challenge.

``NonceStore`` is the protocol the custodian backs with its database (a row per nonce, consumed
by one conditional update); ``InMemoryNonceStore`` is the single-process implementation.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from enclaves.attestation.errors import AttestationRefused, RefusalCode

NONCE_BYTES = 32
DEFAULT_TTL = timedelta(minutes=5)


class NonceStore(Protocol):
    def issue(self, *, now: datetime) -> bytes:
        """A fresh random nonce, valid until ``now`` plus the store's lifetime."""
        ...

    def consume(self, nonce: bytes, *, now: datetime) -> None:
        """Mark ``nonce`` used, or raise ``AttestationRefused`` (nonce_unknown, nonce_expired,
        nonce_reused). Exactly one of any number of concurrent calls succeeds."""
        ...


@dataclass
class _Entry:
    expires_at: datetime
    used: bool = False


class InMemoryNonceStore:
    """A dict behind a lock. Expired entries are dropped on each call; a used nonce is remembered
    until it expires, after which it reads as unknown (still refused)."""

    def __init__(self, ttl: timedelta = DEFAULT_TTL) -> None:
        if ttl <= timedelta(0):
            raise ValueError("the nonce lifetime must be positive")
        self._ttl = ttl
        self._entries: dict[bytes, _Entry] = {}
        self._lock = threading.Lock()

    def issue(self, *, now: datetime) -> bytes:
        _require_aware(now)
        nonce = secrets.token_bytes(NONCE_BYTES)
        with self._lock:
            self._purge(now)
            self._entries[nonce] = _Entry(expires_at=now + self._ttl)
        return nonce

    def consume(self, nonce: bytes, *, now: datetime) -> None:
        _require_aware(now)
        with self._lock:
            entry = self._entries.get(nonce)
            if entry is None:
                raise AttestationRefused(RefusalCode.NONCE_UNKNOWN)
            if now >= entry.expires_at:
                del self._entries[nonce]
                raise AttestationRefused(RefusalCode.NONCE_EXPIRED)
            if entry.used:
                raise AttestationRefused(RefusalCode.NONCE_REUSED)
            entry.used = True
            self._purge(now)

    def __len__(self) -> int:
        return len(self._entries)

    def _purge(self, now: datetime) -> None:
        for nonce in [nonce for nonce, entry in self._entries.items() if now >= entry.expires_at]:
            del self._entries[nonce]


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
