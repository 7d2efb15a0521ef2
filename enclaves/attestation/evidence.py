"""The evidence model every backend shares, the report-data binding, and the relying party's policy.

Invariants:
- ``Evidence.claims`` are what the evidence *says*, parsed but not authenticated; only the
  ``VerifiedClaims`` that ``verify`` returns were checked against a pinned root.
- ``report_data_for`` is the one binding: H(nonce ‖ enclave ephemeral public key ‖ job manifest
  hash), length-prefixed and domain-separated so no two inputs share a preimage.
- The TEE type travels with every verified result (its receipt and its attestation hash), so
  sandbox evidence (SIMULATED) can never pass for hardware.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

REPORT_DATA_DOMAIN = b"redlake/attestation/report-data/v1"
ATTESTATION_HASH_DOMAIN = b"redlake/attestation/verified/v1"
EVIDENCE_DIGEST_DOMAIN = b"redlake/attestation/evidence/v1"
REPORT_DATA_LEN = 64  # SHA-512: exactly the 64-byte REPORTDATA field of SGX, TDX and SEV-SNP
MIN_NONCE_LEN = 16
MANIFEST_HASH_LEN = 32
# Verifiers that count whole seconds (dcap-qvl) see this as the second before not_after.
_LAST_MOMENT_BEFORE = timedelta(seconds=1)


class TeeType(enum.StrEnum):
    SANDBOX = "sandbox"
    NITRO = "nitro"
    SGX = "sgx"
    TDX = "tdx"
    SEV_SNP = "sev-snp"

    @property
    def simulated(self) -> bool:
        return self is TeeType.SANDBOX

    @property
    def label(self) -> str:
        """What every receipt and API response shows next to the TEE type."""
        return "SIMULATED" if self.simulated else "HARDWARE"


class TcbStatus(enum.StrEnum):
    """Intel's TCB statuses (names as in its TCB info), plus NOT_REPORTED for platforms that
    publish none: Nitro and the sandbox report no TCB, SEV-SNP reports version numbers that the
    policy's ``minimum_tcb`` floor judges instead."""

    UP_TO_DATE = "UpToDate"
    SW_HARDENING_NEEDED = "SWHardeningNeeded"
    CONFIGURATION_NEEDED = "ConfigurationNeeded"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
    OUT_OF_DATE = "OutOfDate"
    OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
    REVOKED = "Revoked"
    NOT_REPORTED = "NotReported"


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("attestation times must be timezone-aware")
    return moment


@dataclass(frozen=True)
class ValidityWindow:
    """The intersection of every certificate's and every piece of collateral's validity, as a
    half-open interval: at ``not_after`` itself the evidence is already expired (Intel's CRLs and
    TCB info are judged that way, and one second of strictness costs nothing)."""

    not_before: datetime
    not_after: datetime

    def __post_init__(self) -> None:
        _aware(self.not_before)
        _aware(self.not_after)

    @property
    def empty(self) -> bool:
        return self.not_before >= self.not_after

    def contains(self, moment: datetime) -> bool:
        return self.not_before <= _aware(moment) < self.not_after

    def clamp(self, moment: datetime) -> datetime:
        """The moment inside the window nearest to ``moment``. Signatures are checked there, so
        a forged chain and an expired one are told apart (the validity check comes after)."""
        return min(max(_aware(moment), self.not_before), self.not_after - _LAST_MOMENT_BEFORE)

    @staticmethod
    def intersect(windows: list[tuple[datetime, datetime]]) -> ValidityWindow:
        if not windows:
            raise ValueError("no validity windows to intersect")
        return ValidityWindow(max(start for start, _ in windows), min(end for _, end in windows))


def _frozen_mapping(value: Mapping[str, bytes]) -> Mapping[str, bytes]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class Claims:
    """What a piece of evidence states about the enclave.

    ``measurement`` is the one register the offer's allow-list names (Nitro PCR0, SGX MRENCLAVE,
    TDX MRTD, SEV-SNP MEASUREMENT, the sandbox's bundle hash); ``measurements`` holds every
    register by name. ``tcb_components`` are version numbers a ``minimum_tcb`` floor compares
    (SEV-SNP's reported TCB).
    """

    measurement: bytes
    measurements: Mapping[str, bytes]
    signer: bytes
    debug: bool
    tcb_status: TcbStatus
    advisories: frozenset[str]
    report_data: bytes
    validity: ValidityWindow
    tcb_components: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "measurements", _frozen_mapping(self.measurements))


@dataclass(frozen=True)
class Evidence:
    """Raw evidence of one TEE type, its collateral (DCAP collateral JSON; the SEV-SNP
    VCEK/ASK/ARK certificates), the enclave's ephemeral public key (DER SubjectPublicKeyInfo; the
    key the custodian will wrap the data key to) and the claims parsed from the raw bytes."""

    tee_type: TeeType
    raw: bytes
    claims: Claims
    ephemeral_public_key: bytes = b""
    collateral: tuple[bytes, ...] = ()

    def digest(self) -> bytes:
        """SHA-256 naming these exact bytes (raw and collateral, with the TEE type)."""
        h = hashlib.sha256(EVIDENCE_DIGEST_DOMAIN)
        for part in (self.tee_type.encode(), self.raw, *self.collateral):
            h.update(len(part).to_bytes(8, "big") + part)
        return h.digest()


@dataclass(frozen=True)
class VerifiedClaims:
    """Claims that passed every check, as of ``verified_at``."""

    tee_type: TeeType
    claims: Claims
    ephemeral_public_key: bytes
    evidence_digest: bytes
    verified_at: datetime

    @property
    def simulated(self) -> bool:
        return self.tee_type.simulated

    @property
    def label(self) -> str:
        return self.tee_type.label

    def attestation_hash(self) -> bytes:
        """The 32 bytes a receipt or the chain records. The TEE type and its label are inside
        the preimage, so a sandbox result can never hash like a hardware one."""
        h = hashlib.sha256(ATTESTATION_HASH_DOMAIN)
        parts = (
            self.tee_type.encode(),
            self.label.encode(),
            self.evidence_digest,
            self.claims.measurement,
            self.claims.report_data,
            self.ephemeral_public_key,
            self.claims.tcb_status.encode(),
        )
        for part in parts:
            h.update(len(part).to_bytes(8, "big") + part)
        return h.digest()

    def receipt(self) -> dict[str, str]:
        """The public summary every receipt and API response carries."""
        return {
            "tee_type": str(self.tee_type),
            "label": self.label,
            "measurement": self.claims.measurement.hex(),
            "tcb_status": str(self.claims.tcb_status),
            "attestation_hash": self.attestation_hash().hex(),
            "verified_at": self.verified_at.isoformat(),
        }


def report_data_for(nonce: bytes, ephemeral_public_key: bytes, manifest_hash: bytes) -> bytes:
    """The 64 bytes an enclave must put in its evidence's report data for this challenge.

    Each part is length-prefixed, so moving bytes between the key and the manifest hash changes
    the result; the domain tag keeps the hash from meaning anything anywhere else.
    """
    if len(nonce) < MIN_NONCE_LEN:
        raise ValueError(f"the nonce must be at least {MIN_NONCE_LEN} bytes")
    if not ephemeral_public_key:
        raise ValueError("the enclave's ephemeral public key is required")
    if len(manifest_hash) != MANIFEST_HASH_LEN:
        raise ValueError(f"the manifest hash must be {MANIFEST_HASH_LEN} bytes (SHA-256)")
    h = hashlib.sha512(REPORT_DATA_DOMAIN)
    for part in (nonce, ephemeral_public_key, manifest_hash):
        h.update(len(part).to_bytes(8, "big") + part)
    return h.digest()


HARDWARE_TEE_TYPES = frozenset(t for t in TeeType if not t.simulated)


@dataclass(frozen=True)
class Policy:
    """What one offer accepts. Sandbox evidence is refused unless ``allow_sandbox`` is set *and*
    the launcher's public key is listed: the sandbox is a separate, explicit opt-in, never a
    member of ``allowed_tee_types``.

    ``allowed_measurements`` pairs a TEE type with the exact measurement bytes allowed for it.
    ``minimum_tcb`` lists floors as (TEE type, component, minimum): evidence of that type must
    report the component at or above the floor (SEV-SNP: boot_loader, tee, snp, microcode).
    """

    allowed_tee_types: frozenset[TeeType]
    allowed_measurements: frozenset[tuple[TeeType, bytes]]
    allow_sandbox: bool = False
    sandbox_launcher_keys: frozenset[bytes] = frozenset()
    accepted_tcb_statuses: frozenset[TcbStatus] = frozenset({TcbStatus.UP_TO_DATE})
    accepted_advisories: frozenset[str] = frozenset()
    minimum_tcb: tuple[tuple[TeeType, str, int], ...] = ()
    allow_debug: bool = False

    def __post_init__(self) -> None:
        if TeeType.SANDBOX in self.allowed_tee_types:
            raise ValueError("sandbox execution is allowed through allow_sandbox, not allowed_tee_types")
        if self.allow_sandbox and not self.sandbox_launcher_keys:
            raise ValueError("allow_sandbox needs the launcher's public key in sandbox_launcher_keys")
        if TcbStatus.REVOKED in self.accepted_tcb_statuses:
            raise ValueError("a revoked TCB is never acceptable")

    def allows_tee_type(self, tee_type: TeeType) -> bool:
        return self.allow_sandbox if tee_type.simulated else tee_type in self.allowed_tee_types

    def allows_measurement(self, tee_type: TeeType, measurement: bytes) -> bool:
        return (tee_type, measurement) in self.allowed_measurements
