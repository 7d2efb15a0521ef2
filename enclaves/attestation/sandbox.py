"""Sandbox evidence: a statement signed by the local launcher's Ed25519 key, labelled SIMULATED.

The local backend (a bubblewrap sandbox) has no hardware to vouch for it; its launcher signs what
it ran instead. That key is in no trusted root: ``verify`` accepts the statement only under a
policy that sets ``allow_sandbox`` and lists this launcher's public key, and every verified result
carries ``tee_type=sandbox`` and the SIMULATED label.

Wire format: CBOR ``[DOMAIN, payload, signature]``; ``payload`` is a CBOR map, ``signature`` is
Ed25519 over ``DOMAIN ‖ payload``. The launcher key is a PKCS#8 PEM file created once (mode 0600)
under a path the caller chooses.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from enclaves.attestation.errors import AttestationRefused, RefusalCode
from enclaves.attestation.evidence import Claims, Evidence, Policy, TcbStatus, TeeType, ValidityWindow

DOMAIN = b"redlake/sandbox-evidence/v1"
LABEL = "SIMULATED"
DEFAULT_LIFETIME = timedelta(minutes=10)
MAX_STATEMENT_LEN = 16 * 1024
MAX_FIELD_LEN = 1024
KEY_FILE_MODE = 0o600


@dataclass(frozen=True)
class _Statement:
    payload: bytes
    signature: bytes
    launcher_key: bytes
    measurement: bytes
    report_data: bytes
    ephemeral_public_key: bytes
    issued_at: datetime
    expires_at: datetime
    debug: bool


def load_or_create_launcher_key(path: Path) -> Ed25519PrivateKey:
    """The launcher's signing key, generated on first use. Created exclusively with mode 0600; an
    existing file readable by group or others is refused, as ssh refuses such a key."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            raise PermissionError(f"launcher key {path} must not be readable by group or others") from None
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"launcher key {path} is not an Ed25519 key") from None
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    return key


def launcher_public_key(key: Ed25519PrivateKey) -> bytes:
    """The 32 raw bytes a policy lists in ``sandbox_launcher_keys``."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("attestation times must be timezone-aware")
    return int(moment.timestamp() * 1000)


def sign_statement(
    key: Ed25519PrivateKey,
    *,
    measurement: bytes,
    report_data: bytes,
    ephemeral_public_key: bytes,
    issued_at: datetime,
    lifetime: timedelta = DEFAULT_LIFETIME,
    debug: bool = False,
) -> bytes:
    """What the launcher hands the custodian for one sandboxed run: the bundle it ran
    (``measurement``), the report data the run asked it to bind and the run's ephemeral key."""
    for name, value in (("measurement", measurement), ("report_data", report_data)):
        if not value or len(value) > MAX_FIELD_LEN:
            raise ValueError(f"{name} must be 1 to {MAX_FIELD_LEN} bytes")
    payload = cbor2.dumps(
        {
            "tee_type": str(TeeType.SANDBOX),
            "label": LABEL,
            "launcher_key": launcher_public_key(key),
            "measurement": measurement,
            "report_data": report_data,
            "public_key": ephemeral_public_key,
            "issued_at": _epoch_ms(issued_at),
            "expires_at": _epoch_ms(issued_at + lifetime),
            "debug": debug,
        }
    )
    return cbor2.dumps([DOMAIN, payload, key.sign(DOMAIN + payload)])


def _malformed(reason: str) -> AttestationRefused:
    return AttestationRefused(RefusalCode.EVIDENCE_MALFORMED, {"reason": reason})


def _field(payload: dict[Any, Any], name: str, kind: type) -> Any:
    value = payload.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _malformed(f"{name} missing")
    if isinstance(value, bytes) and len(value) > MAX_FIELD_LEN:
        raise _malformed(f"{name} too long")
    return value


def _moment(epoch_ms: int) -> datetime:
    try:
        return datetime.fromtimestamp(epoch_ms / 1000, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED) from exc


def _decode(raw: bytes) -> _Statement:
    if len(raw) > MAX_STATEMENT_LEN:
        raise _malformed("statement too large")
    try:
        envelope = cbor2.loads(raw, allow_duplicate_keys=False, allow_indefinite=False)
        if not isinstance(envelope, list) or len(envelope) != 3 or envelope[0] != DOMAIN:
            raise _malformed("not a sandbox statement")
        _, payload_bytes, signature = envelope
        if not isinstance(payload_bytes, bytes) or not isinstance(signature, bytes):
            raise _malformed("not a sandbox statement")
        payload = cbor2.loads(payload_bytes, allow_duplicate_keys=False, allow_indefinite=False)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED) from exc
    # One encoding per statement: re-encoding must give the same bytes (the launcher writes
    # cbor2's own output), so a bit flipped in framing cannot slip through.
    if cbor2.dumps([DOMAIN, payload_bytes, signature]) != raw or cbor2.dumps(payload) != payload_bytes:
        raise _malformed("non-canonical encoding")
    if not isinstance(payload, dict):
        raise _malformed("payload is not a map")
    if payload.get("tee_type") != str(TeeType.SANDBOX) or payload.get("label") != LABEL:
        raise _malformed("not labelled as simulated sandbox evidence")
    return _Statement(
        payload=payload_bytes,
        signature=signature,
        launcher_key=_field(payload, "launcher_key", bytes),
        measurement=_field(payload, "measurement", bytes),
        report_data=_field(payload, "report_data", bytes),
        ephemeral_public_key=_field(payload, "public_key", bytes),
        issued_at=_moment(_field(payload, "issued_at", int)),
        expires_at=_moment(_field(payload, "expires_at", int)),
        debug=_field(payload, "debug", bool),
    )


def _claims(statement: _Statement) -> Claims:
    return Claims(
        measurement=statement.measurement,
        measurements={"bundle": statement.measurement},
        signer=statement.launcher_key,
        debug=statement.debug,
        tcb_status=TcbStatus.NOT_REPORTED,
        advisories=frozenset(),
        report_data=statement.report_data,
        validity=ValidityWindow(statement.issued_at, statement.expires_at),
    )


def evidence_from_statement(raw: bytes) -> Evidence:
    statement = _decode(raw)
    return Evidence(
        tee_type=TeeType.SANDBOX,
        raw=raw,
        claims=_claims(statement),
        ephemeral_public_key=statement.ephemeral_public_key,
    )


def check_signatures(evidence: Evidence, policy: Policy, now: datetime) -> Claims:
    """The statement's signature under a launcher key the policy lists; returns its claims.
    Time is judged by ``verify`` against the statement's own lifetime."""
    statement = _decode(evidence.raw)
    if not any(hmac.compare_digest(statement.launcher_key, trusted) for trusted in policy.sandbox_launcher_keys):
        raise AttestationRefused(RefusalCode.CHAIN_UNTRUSTED)
    try:
        Ed25519PublicKey.from_public_bytes(statement.launcher_key).verify(
            statement.signature, DOMAIN + statement.payload
        )
    except (InvalidSignature, ValueError) as exc:
        raise AttestationRefused(RefusalCode.SIGNATURE_INVALID) from exc
    if statement.ephemeral_public_key != evidence.ephemeral_public_key:
        raise AttestationRefused(RefusalCode.SIGNATURE_INVALID, {"reason": "public_key is not the signed one"})
    return _claims(statement)
