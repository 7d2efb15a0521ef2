"""The key broker the launcher talks to: the caller's custodian, behind a small protocol.

``KeyBroker`` is what ``run_job`` needs from whoever holds the data keys (in Redlake, the key
custodian): a fresh single-use nonce, and — given evidence bound to that nonce — the data keys
wrapped to the enclave's ephemeral key, or an ``AttestationRefused``. The launcher never sees a
data key in the clear.

``LocalKeyBroker`` is the reference implementation of the custodian's steps (consume the nonce
first, ``verify`` against the offer's policy, wrap under the attestation hash), over an
in-memory nonce store and a dict of keys. The Django custodian does the same with its nonce
table, the on-chain approval and usage checks, and the vault.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from enclaves.attestation import AttestationRefused, Evidence, NonceStore, Policy, VerifiedClaims, verify
from enclaves.attestation.errors import RefusalCode
from enclaves.attestation.keywrap import wrap_data_key


@dataclass(frozen=True)
class KeyRelease:
    """Data keys wrapped (compact JWE) to the verified enclave key, by key id, and the context
    they were wrapped under (``verified.attestation_hash().hex()``)."""

    tokens: Mapping[str, str]
    context: str
    verified: VerifiedClaims


class KeyBroker(Protocol):
    def issue_nonce(self) -> bytes:
        """A fresh, single-use attestation nonce for one run."""
        ...

    def release(self, evidence: Evidence, *, nonce: bytes, manifest_hash: bytes, key_ids: Sequence[str]) -> KeyRelease:
        """Consume ``nonce``, verify ``evidence`` for the job ``manifest_hash`` names, and wrap
        the data keys ``key_ids`` to the evidence's ephemeral key; or raise
        ``AttestationRefused`` having released nothing."""
        ...


@dataclass
class LocalKeyBroker:
    policy: Policy
    nonces: NonceStore
    data_keys: Mapping[str, bytes]
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    released: list[VerifiedClaims] = field(default_factory=list)

    def issue_nonce(self) -> bytes:
        return self.nonces.issue(now=self.clock())

    def release(self, evidence: Evidence, *, nonce: bytes, manifest_hash: bytes, key_ids: Sequence[str]) -> KeyRelease:
        now = self.clock()
        self.nonces.consume(nonce, now=now)  # first: a refused attempt burns the nonce too
        verified = verify(evidence, self.policy, nonce, now, manifest_hash=manifest_hash)
        unknown = [key_id for key_id in key_ids if key_id not in self.data_keys]
        if unknown:
            raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED, {"reason": "unknown data key"})
        context = verified.attestation_hash().hex()
        tokens = {
            key_id: wrap_data_key(self.data_keys[key_id], verified.ephemeral_public_key, context=context)
            for key_id in key_ids
        }
        self.released.append(verified)
        return KeyRelease(tokens=tokens, context=context, verified=verified)
