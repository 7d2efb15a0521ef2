"""What a sandbox job ends in: its limits, its failure codes (fixed messages, nothing from the
job's data), its meters, and the signed, checked result with the binding that ties the enclave's
result key to the attested run."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from enclaves.attestation import Evidence, RefusalCode, TeeType, VerifiedClaims
from enclaves.protocol import result_signing_payload

BINDING_DOMAIN = b"redlake/sandbox/result-binding/v1"

# Stable failure codes and their fixed messages: nothing in them comes from the job's data.
FAILURE_MESSAGES: Mapping[str, str] = {
    "attestation_refused": "The key broker refused the enclave's evidence; no key was released.",
    "sandbox_violation": "The algorithm made a system call the sandbox forbids and was killed.",
    "memory_limit": "The algorithm exceeded its memory limit and was killed.",
    "process_limit": "The algorithm exceeded its process limit.",
    "wall_clock_limit": "The algorithm exceeded its wall-clock limit and was killed.",
    "algorithm_error": "The algorithm raised an error.",
    "result_not_json": "The algorithm's result is not JSON.",
    "output_schema_mismatch": "The result does not match the bundle's output schema.",
    "output_too_large": "The result is larger than the bundle's maximum output size.",
    "key_unwrap_failed": "The enclave could not unwrap a data key.",
    "input_tampered": "A sealed input failed authentication.",
    "input_unreadable": "A decrypted input is not a readable table.",
    "protocol_error": "The enclave broke the launcher protocol.",
    "sandbox_failed": "The sandbox ended without a result.",
}


class JobFailed(Exception):
    """A sandbox job that produced no releasable result. ``code`` is one of
    ``FAILURE_MESSAGES``; ``refusal`` the attestation refusal code when the broker refused;
    ``metering`` what ran before it stopped (None if nothing started)."""

    def __init__(self, code: str, *, refusal: RefusalCode | None = None, metering: Metering | None = None) -> None:
        self.code = code
        self.message = FAILURE_MESSAGES[code]
        self.refusal = refusal
        self.metering = metering
        super().__init__(f"{code}: {self.message}" + (f" ({refusal})" if refusal else ""))


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 512 * 1024 * 1024
    max_processes: int = 64
    wall_seconds: float = 60.0
    work_dir_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.memory_bytes < 64 * 1024 * 1024:
            raise ValueError("a sandbox needs at least 64 MiB")
        if not 1 <= self.max_processes <= 4096 or self.wall_seconds <= 0 or self.work_dir_bytes < 1 << 20:
            raise ValueError("limits out of range")


@dataclass(frozen=True)
class Metering:
    """What the job's cgroup measured. ``cpu_ms`` is every CPU-millisecond of the sandbox;
    ``startup_cpu_ms`` the part spent before the enclave said ready (bubblewrap, interpreter,
    runtime imports, key generation: the same for every job, before any job data exists);
    ``billable_cpu_ms`` the rest (decryption, the algorithm, the result)."""

    cpu_ms: int
    startup_cpu_ms: int
    peak_memory_bytes: int
    bytes_read: int
    wall_ms: int

    @property
    def billable_cpu_ms(self) -> int:
        return max(0, self.cpu_ms - self.startup_cpu_ms)

    def as_dict(self) -> dict[str, int]:
        return {
            "cpu_ms": self.cpu_ms,
            "startup_cpu_ms": self.startup_cpu_ms,
            "billable_cpu_ms": self.billable_cpu_ms,
            "peak_memory_bytes": self.peak_memory_bytes,
            "bytes_read": self.bytes_read,
            "wall_ms": self.wall_ms,
        }


@dataclass(frozen=True)
class ResultSignature:
    """The enclave's Ed25519 signature over the result (``protocol.result_signing_payload``) and
    the launcher's binding of that enclave key to the attested run: a CBOR map of the attestation
    hash, the enclave key, the result's SHA-256 and the measurement, signed by the launcher key
    that signed the evidence."""

    enclave_key: bytes
    enclave_signature: bytes
    binding: bytes
    binding_signature: bytes


class ResultSignatureInvalid(Exception):
    pass


def verify_result_signature(
    result: bytes, signature: ResultSignature, *, attestation_hash: bytes, launcher_keys: Sequence[bytes]
) -> None:
    """Raise ``ResultSignatureInvalid`` unless ``result`` was signed by the enclave that the
    evidence with ``attestation_hash`` attested, as bound by a trusted launcher key."""
    try:
        binding = cbor2.loads(signature.binding)
        if not isinstance(binding, dict):
            raise ResultSignatureInvalid("binding is not a map")
        launcher = binding["launcher_key"]
        if not any(hmac.compare_digest(launcher, key) for key in launcher_keys):
            raise ResultSignatureInvalid("unknown launcher key")
        launcher_public = Ed25519PublicKey.from_public_bytes(launcher)
        launcher_public.verify(signature.binding_signature, BINDING_DOMAIN + signature.binding)
        if binding["attestation_hash"] != attestation_hash or binding["enclave_key"] != signature.enclave_key:
            raise ResultSignatureInvalid("binding is for another run")
        context = attestation_hash.hex()
        Ed25519PublicKey.from_public_bytes(signature.enclave_key).verify(
            signature.enclave_signature, result_signing_payload(result, context)
        )
        if binding["result_sha256"] != _sha256(result):
            raise ResultSignatureInvalid("binding is for another result")
    except (InvalidSignature, KeyError, TypeError, ValueError, cbor2.CBORDecodeError) as exc:
        raise ResultSignatureInvalid("signature does not verify") from exc


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class RunOutcome:
    result: Any
    result_bytes: bytes
    result_signature: ResultSignature
    evidence: Evidence
    verified: VerifiedClaims
    measurement: bytes
    metering: Metering
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    @property
    def tee_type(self) -> TeeType:
        return self.verified.tee_type

    @property
    def label(self) -> str:
        return self.verified.label

    def receipt(self) -> dict[str, Any]:
        """What a receipt records: the verified TEE type, label (SIMULATED), measurement and
        attestation hash; the result's hash; the meters."""
        return {
            **self.verified.receipt(),
            "result_sha256": _sha256(self.result_bytes).hex(),
            "metering": self.metering.as_dict(),
        }
