"""The Nitro verifier on real AWS attestation documents (blocky/nitrite's test data)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from enclaves.attestation import AttestationRefused, Policy, RefusalCode, TcbStatus, TeeType, nitro, verify_against
from enclaves.attestation.evidence import Evidence, VerifiedClaims
from tests.support.attestation import flip, requires_vectors, spread, utc, vector

pytestmark = requires_vectors

DOCUMENT_TIME = utc("2024-09-07T14:37:39.545Z")
DEBUG_DOCUMENT_TIME = utc("2024-09-07T14:38:06.508Z")
ONES = b"\x01" * 1024  # the documents' nonce, user_data and public_key
README_ROOT_FINGERPRINT = "641A0321A3E244EFE456463195D606317ED7CDCC3C1756E09893F3C68F79BB5B"


def _document(name: str) -> bytes:
    return base64.b64decode(vector(f"nitro/{name}"))


@pytest.fixture(scope="module")
def document() -> bytes:
    return _document("nitro_attestation.b64")


@pytest.fixture(scope="module")
def evidence(document: bytes) -> Evidence:
    return nitro.evidence_from_document(document)


def _policy(measurement: bytes, *, allow_debug: bool = False) -> Policy:
    return Policy(
        allowed_tee_types=frozenset({TeeType.NITRO}),
        allowed_measurements=frozenset({(TeeType.NITRO, measurement)}),
        allow_debug=allow_debug,
    )


def _verify(evidence: Evidence, policy: Policy, now: datetime = DOCUMENT_TIME) -> VerifiedClaims:
    return verify_against(evidence, policy, expected_report_data=ONES, now=now)


def test_the_pinned_root_is_the_aws_root_the_vectors_ship() -> None:
    root = x509.load_pem_x509_certificate(vector("nitro/root.pem"))
    fingerprint = hashlib.sha256(root.public_bytes(Encoding.DER)).digest()
    assert fingerprint == nitro.AWS_NITRO_ROOT_SHA256
    assert fingerprint.hex().upper() == README_ROOT_FINGERPRINT


def test_real_document_is_accepted_at_its_time(evidence: Evidence) -> None:
    verified = verify_against(
        evidence, _policy(evidence.claims.measurement), expected_report_data=ONES, now=DOCUMENT_TIME
    )

    assert verified.tee_type is TeeType.NITRO
    assert verified.label == "HARDWARE"
    assert not verified.simulated
    pcr0 = verified.claims.measurement.hex()
    assert pcr0.startswith("e72a46ca")
    assert pcr0.endswith("c9fe86a")
    assert verified.claims.measurements["pcr0"] == verified.claims.measurement
    assert verified.claims.report_data == ONES
    assert verified.ephemeral_public_key == ONES
    assert verified.claims.debug is False
    assert verified.claims.tcb_status is TcbStatus.NOT_REPORTED
    assert verified.receipt()["tee_type"] == "nitro"


def test_document_is_refused_once_its_certificate_expires(evidence: Evidence) -> None:
    policy = _policy(evidence.claims.measurement)
    expiry = evidence.claims.validity.not_after

    with pytest.raises(AttestationRefused) as refused:
        _verify(evidence, policy, expiry)
    assert refused.value.code is RefusalCode.EXPIRED

    with pytest.raises(AttestationRefused) as refused:
        _verify(evidence, policy, expiry + timedelta(days=365))
    assert refused.value.code is RefusalCode.EXPIRED


def test_document_is_refused_before_its_certificate_is_valid(evidence: Evidence) -> None:
    with pytest.raises(AttestationRefused) as refused:
        _verify(
            evidence, _policy(evidence.claims.measurement), evidence.claims.validity.not_before - timedelta(seconds=1)
        )
    assert refused.value.code is RefusalCode.NOT_YET_VALID


def _positions(document: bytes) -> dict[str, int]:
    parsed = nitro.evidence_from_document(document)
    leaf_start = document.find(b"\x30\x82", document.find(b"certificate"))
    root_der = x509.load_pem_x509_certificate(vector("nitro/root.pem")).public_bytes(Encoding.DER)
    return {
        "cose array header": 0,
        "protected header (algorithm)": document.find(bytes([0x01, 0x38, 0x22])) + 2,
        "module_id": document.find(b"i-0a22e5c5f24d22174") + 3,
        "timestamp": document.find(b"timestamp") + 11,
        "pcr0": document.find(parsed.claims.measurement) + 5,
        "pcr4": document.find(parsed.claims.measurements["pcr4"]) + 40,
        "leaf certificate public key": leaf_start + 200,
        "leaf certificate signature": leaf_start + 600,
        "root certificate in cabundle": document.find(root_der) + 300,
        "user_data": document.find(b"user_data") + 100,
        "public_key": document.find(b"public_key") + 500,
        "nonce": document.find(b"nonce") + 900,
        "signature r": len(document) - 90,
        "signature s": len(document) - 1,
    }


@pytest.mark.parametrize(
    "where",
    [
        "cose array header",
        "protected header (algorithm)",
        "module_id",
        "timestamp",
        "pcr0",
        "pcr4",
        "leaf certificate public key",
        "leaf certificate signature",
        "root certificate in cabundle",
        "user_data",
        "public_key",
        "nonce",
        "signature r",
        "signature s",
    ],
)
def test_document_with_one_bit_flipped_is_refused(document: bytes, evidence: Evidence, where: str) -> None:
    position = _positions(document)[where]
    assert 0 <= position < len(document), where
    policy = _policy(evidence.claims.measurement)
    for bit in range(8):
        with pytest.raises(AttestationRefused):
            _verify(nitro.evidence_from_document(flip(document, position, bit)), policy)


def test_no_single_bit_flip_across_the_document_is_accepted(document: bytes, evidence: Evidence) -> None:
    policy = _policy(evidence.claims.measurement)
    accepted = []
    for position in spread(len(document)):
        try:
            _verify(nitro.evidence_from_document(flip(document, position)), policy)
        except AttestationRefused:
            continue
        accepted.append(position)
    assert accepted == []


def test_debug_document_is_refused_by_a_no_debug_policy() -> None:
    debug = nitro.evidence_from_document(_document("nitro_attestation_debug.b64"))
    assert debug.claims.debug is True
    assert not any(debug.claims.measurement)
    policy = _policy(debug.claims.measurement)

    with pytest.raises(AttestationRefused) as refused:
        _verify(debug, policy, DEBUG_DOCUMENT_TIME)
    assert refused.value.code is RefusalCode.DEBUG_ENCLAVE

    # its signature and chain are good: only the policy refuses it
    assert _verify(debug, _policy(debug.claims.measurement, allow_debug=True), DEBUG_DOCUMENT_TIME)


def test_self_signed_document_is_refused_at_any_time() -> None:
    forged = nitro.evidence_from_document(_document("selfsigned_attestation.b64"))
    for now in (DOCUMENT_TIME, utc("2024-04-17T18:51:46Z"), utc("2030-01-01T00:00:00Z")):
        with pytest.raises(AttestationRefused) as refused:
            verify_against(forged, _policy(forged.claims.measurement), expected_report_data=b"", now=now)
        assert refused.value.code is RefusalCode.CHAIN_UNTRUSTED


def test_document_bound_to_other_report_data_is_refused(evidence: Evidence) -> None:
    with pytest.raises(AttestationRefused) as refused:
        verify_against(
            evidence, _policy(evidence.claims.measurement), expected_report_data=b"\x02" * 1024, now=DOCUMENT_TIME
        )
    assert refused.value.code is RefusalCode.REPORT_DATA_MISMATCH


def test_measurement_not_on_the_allow_list_is_refused(evidence: Evidence) -> None:
    with pytest.raises(AttestationRefused) as refused:
        _verify(evidence, _policy(bytes(48)))
    assert refused.value.code is RefusalCode.MEASUREMENT_NOT_ALLOWED


def test_nitro_evidence_is_refused_by_an_offer_that_does_not_accept_nitro(evidence: Evidence) -> None:
    policy = Policy(
        allowed_tee_types=frozenset({TeeType.SGX}),
        allowed_measurements=frozenset({(TeeType.NITRO, evidence.claims.measurement)}),
    )
    with pytest.raises(AttestationRefused) as refused:
        _verify(evidence, policy)
    assert refused.value.code is RefusalCode.TEE_TYPE_NOT_ALLOWED


def test_hand_built_claims_are_not_trusted(evidence: Evidence) -> None:
    """A caller who edits the parsed claims gains nothing: verify reads the signed bytes."""
    lying = replace(evidence, claims=replace(evidence.claims, measurement=bytes(48), debug=False))
    with pytest.raises(AttestationRefused) as refused:
        _verify(lying, _policy(bytes(48)))
    assert refused.value.code is RefusalCode.MEASUREMENT_NOT_ALLOWED


def test_refusal_messages_carry_no_library_text(document: bytes, evidence: Evidence) -> None:
    with pytest.raises(AttestationRefused) as refused:
        _verify(nitro.evidence_from_document(flip(document, len(document) - 1)), _policy(evidence.claims.measurement))
    assert str(refused.value) == f"{refused.value.code}: {refused.value.message}"
