"""AWS Nitro Enclaves attestation documents.

A document is a COSE_Sign1 (ES384) over a CBOR map; its signing certificate chains, through the
``cabundle``, to the AWS Nitro Enclaves root pinned below. PCR0 (the enclave image) is the
measurement; ``user_data`` carries the report data and ``public_key`` the enclave's ephemeral key.
A debug-mode enclave's PCRs 0-2 are all zeros (AWS documents this), which is how debug is read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from enclaves.attestation import _x509
from enclaves.attestation.errors import AttestationRefused, RefusalCode
from enclaves.attestation.evidence import Claims, Evidence, Policy, TcbStatus, TeeType, ValidityWindow

# AWS_NitroEnclaves_Root-G1 (CN=aws.nitro-enclaves), SHA-256 of its DER as AWS publishes it with
# the root in https://aws-nitro-enclaves.amazonaws.com/AWS_NitroEnclaves_Root-G1.zip ("Verifying
# the root of trust" in the Nitro Enclaves guide); identical to blocky/nitrite's
# internal/assets/root.pem and to the first certificate of every real document's cabundle.
AWS_NITRO_ROOT_SHA256 = bytes.fromhex("641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b")

COSE_SIGN1_TAG = 18
COSE_HEADER_ALG = 1
COSE_ALG_ES384 = -35
ES384_SIGNATURE_LEN = 96
MAX_DOCUMENT_LEN = 64 * 1024  # real documents are ~5-8 KiB; anything far larger is not one
MAX_USER_FIELD_LEN = 1024  # the NSM API's limit on public_key, user_data and nonce
PCR_LENGTHS = frozenset({32, 48, 64})
DEBUG_PCRS = (0, 1, 2)
SIGNER_PCR = 8  # hash of the certificate that signed the enclave image file


@dataclass(frozen=True)
class _Document:
    protected: bytes
    payload: bytes
    signature: bytes
    pcrs: dict[int, bytes]
    certificate: x509.Certificate
    cabundle: list[x509.Certificate]
    public_key: bytes
    user_data: bytes


def _cbor_exact(data: bytes) -> Any:
    """Decode one CBOR item that must span all of ``data`` (no trailing bytes, no duplicate map
    keys, no indefinite lengths)."""
    stream = io.BytesIO(data)
    try:
        decoded = cbor2.CBORDecoder(stream, read_size=1, allow_duplicate_keys=False, allow_indefinite=False).decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED) from exc
    if stream.tell() != len(data):
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED, {"reason": "trailing bytes"})
    return decoded


def _malformed(reason: str) -> AttestationRefused:
    return AttestationRefused(RefusalCode.EVIDENCE_MALFORMED, {"reason": reason})


def _optional_bytes(document: dict[Any, Any], key: str) -> bytes:
    value = document.get(key)
    if value is None:
        return b""
    if not isinstance(value, bytes) or len(value) > MAX_USER_FIELD_LEN:
        raise _malformed(f"{key} is not a byte string of at most {MAX_USER_FIELD_LEN} bytes")
    return value


def _decode(raw: bytes) -> _Document:
    if len(raw) > MAX_DOCUMENT_LEN:
        raise _malformed("document too large")
    envelope = _cbor_exact(raw)
    if isinstance(envelope, cbor2.CBORTag) and envelope.tag == COSE_SIGN1_TAG:
        envelope = envelope.value
    if not isinstance(envelope, list) or len(envelope) != 4:
        raise _malformed("not a COSE_Sign1 structure")
    protected, unprotected, payload, signature = envelope
    # The unprotected header is not covered by the signature and nothing is read from it; some
    # encoders write nil instead of an empty map.
    if not isinstance(protected, bytes) or not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise _malformed("COSE_Sign1 fields are not byte strings")
    if unprotected is not None and not isinstance(unprotected, dict):
        raise _malformed("COSE unprotected header is not a map")
    header = _cbor_exact(protected)
    if not isinstance(header, dict) or header.get(COSE_HEADER_ALG) != COSE_ALG_ES384:
        raise _malformed("COSE algorithm is not ES384")
    if len(signature) != ES384_SIGNATURE_LEN:
        raise _malformed("ES384 signature has the wrong length")

    document = _cbor_exact(payload)
    if not isinstance(document, dict):
        raise _malformed("attestation document is not a map")
    if not isinstance(document.get("module_id"), str) or not document["module_id"]:
        raise _malformed("module_id missing")
    if document.get("digest") != "SHA384":
        raise _malformed("digest is not SHA384")
    timestamp = document.get("timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp <= 0:
        raise _malformed("timestamp missing")
    pcrs = document.get("pcrs")
    if not isinstance(pcrs, dict) or not pcrs:
        raise _malformed("pcrs missing")
    for index, value in pcrs.items():
        if not isinstance(index, int) or not 0 <= index < 32 or not isinstance(value, bytes):
            raise _malformed("pcrs is not a map of index to bytes")
        if len(value) not in PCR_LENGTHS:
            raise _malformed("a PCR has the wrong length")
    if 0 not in pcrs:
        raise _malformed("PCR0 missing")
    certificate = document.get("certificate")
    if not isinstance(certificate, bytes):
        raise _malformed("certificate missing")
    cabundle = document.get("cabundle") or []
    if not isinstance(cabundle, list) or not all(isinstance(item, bytes) for item in cabundle):
        raise _malformed("cabundle is not a list of certificates")
    return _Document(
        protected=protected,
        payload=payload,
        signature=signature,
        pcrs=dict(pcrs),
        certificate=_x509.load_der(certificate),
        cabundle=[_x509.load_der(item) for item in cabundle],
        public_key=_optional_bytes(document, "public_key"),
        user_data=_optional_bytes(document, "user_data"),
    )


def _claims(document: _Document) -> Claims:
    pcrs = document.pcrs
    return Claims(
        measurement=pcrs[0],
        measurements={f"pcr{index}": value for index, value in sorted(pcrs.items())},
        signer=pcrs.get(SIGNER_PCR, b""),
        debug=all(index in pcrs and not any(pcrs[index]) for index in DEBUG_PCRS),
        tcb_status=TcbStatus.NOT_REPORTED,
        advisories=frozenset(),
        report_data=document.user_data,
        validity=ValidityWindow.intersect(_x509.window_of([document.certificate, *document.cabundle])),
    )


def evidence_from_document(document: bytes) -> Evidence:
    """Parse an attestation document (the raw COSE_Sign1 bytes, not base64). The enclave's
    ephemeral public key is the document's own ``public_key`` field."""
    parsed = _decode(document)
    return Evidence(
        tee_type=TeeType.NITRO, raw=document, claims=_claims(parsed), ephemeral_public_key=parsed.public_key
    )


def _check_chain(document: _Document, at: datetime) -> None:
    if not document.cabundle or _x509.fingerprint(document.cabundle[0]) != AWS_NITRO_ROOT_SHA256:
        raise AttestationRefused(RefusalCode.CHAIN_UNTRUSTED)
    # The document's leaf carries no authority key identifier, which the Web PKI end-entity
    # profile requires; its issuer is still checked by name and signature, and the CA
    # certificates above it get the full CA profile.
    builder = (
        PolicyBuilder()
        .store(Store([document.cabundle[0]]))
        .time(at)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
    )
    try:
        builder.build_client_verifier().verify(document.certificate, document.cabundle[1:])
    except VerificationError as exc:
        raise AttestationRefused(RefusalCode.CHAIN_UNTRUSTED) from exc


def _check_cose_signature(document: _Document) -> None:
    try:
        key = document.certificate.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise AttestationRefused(RefusalCode.SIGNATURE_INVALID) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise AttestationRefused(RefusalCode.SIGNATURE_INVALID)
    to_be_signed = cbor2.dumps(["Signature1", document.protected, b"", document.payload])
    half = ES384_SIGNATURE_LEN // 2
    signature = encode_dss_signature(
        int.from_bytes(document.signature[:half], "big"), int.from_bytes(document.signature[half:], "big")
    )
    try:
        key.verify(signature, to_be_signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as exc:
        raise AttestationRefused(RefusalCode.SIGNATURE_INVALID) from exc


def check_signatures(evidence: Evidence, policy: Policy, now: datetime) -> Claims:
    """The chain to the pinned AWS root and the COSE signature, judged at the moment of the
    validity window nearest to ``now``; returns the claims of the bytes just authenticated."""
    document = _decode(evidence.raw)
    claims = _claims(document)
    if claims.validity.empty:
        raise AttestationRefused(RefusalCode.CHAIN_UNTRUSTED)
    _check_chain(document, claims.validity.clamp(now))
    _check_cose_signature(document)
    if document.public_key != evidence.ephemeral_public_key:
        raise AttestationRefused(RefusalCode.SIGNATURE_INVALID, {"reason": "public_key is not the signed one"})
    return claims
