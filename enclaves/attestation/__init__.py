"""Attestation: one evidence model for every TEE backend, one ``verify``, the nonces that keep
evidence fresh and the key wrap the custodian uses once evidence is accepted.

Backends (``nitro``, ``dcap`` for SGX and TDX, ``sev_snp``, ``sandbox``) turn raw evidence into an
``Evidence``; ``verify`` decides. ``keywrap`` is imported on its own (it needs jwcrypto).
"""

from enclaves.attestation.errors import AttestationRefused, RefusalCode
from enclaves.attestation.evidence import (
    Claims,
    Evidence,
    Policy,
    TcbStatus,
    TeeType,
    ValidityWindow,
    VerifiedClaims,
    report_data_for,
)
from enclaves.attestation.nonces import InMemoryNonceStore, NonceStore
from enclaves.attestation.verify import verify, verify_against

__all__ = [
    "AttestationRefused",
    "Claims",
    "Evidence",
    "InMemoryNonceStore",
    "NonceStore",
    "Policy",
    "RefusalCode",
    "TcbStatus",
    "TeeType",
    "ValidityWindow",
    "VerifiedClaims",
    "report_data_for",
    "verify",
    "verify_against",
]
