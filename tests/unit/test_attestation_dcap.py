"""The DCAP verifier (SGX and TDX) on real Intel quotes and collateral (Phala-Network/dcap-qvl's
samples)."""

from __future__ import annotations

import struct
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from enclaves.attestation import AttestationRefused, Policy, RefusalCode, TcbStatus, TeeType, dcap, verify_against
from enclaves.attestation.evidence import Evidence, VerifiedClaims
from tests.support.attestation import flip, requires_vectors, spread, unix, vector

pytestmark = requires_vectors

QUOTE_TIME = unix(1750377600)
AFTER_EXPIRY = unix(1753000000)  # "TCBInfo expired"
SGX_ADVISORIES = frozenset({"INTEL-SA-00289", "INTEL-SA-00615"})
KEY = b"enclave ephemeral key (unused by these quotes)"


def _evidence(kind: str) -> Evidence:
    return dcap.evidence_from_quote(
        vector(f"dcap/{kind}_quote"), vector(f"dcap/{kind}_quote_collateral.json"), ephemeral_public_key=KEY
    )


@pytest.fixture(scope="module")
def sgx() -> Evidence:
    return _evidence("sgx")


@pytest.fixture(scope="module")
def tdx() -> Evidence:
    return _evidence("tdx")


def _policy(evidence: Evidence, **terms: object) -> Policy:
    return Policy(
        allowed_tee_types=frozenset({TeeType.SGX, TeeType.TDX}),
        allowed_measurements=frozenset({(evidence.tee_type, evidence.claims.measurement)}),
        **terms,  # type: ignore[arg-type]
    )


def _accepting_policy(evidence: Evidence) -> Policy:
    """What an offer must accept for the SGX sample: its platform needs configuration and
    software hardening, under two named advisories."""
    return _policy(
        evidence,
        accepted_tcb_statuses=frozenset({TcbStatus.UP_TO_DATE, TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED}),
        accepted_advisories=SGX_ADVISORIES,
    )


def _verify(evidence: Evidence, policy: Policy, now: datetime = QUOTE_TIME) -> VerifiedClaims:
    return verify_against(evidence, policy, expected_report_data=evidence.claims.report_data, now=now)


def test_sgx_quote_is_accepted_at_its_time(sgx: Evidence) -> None:
    verified = _verify(sgx, _accepting_policy(sgx))

    assert verified.tee_type is TeeType.SGX
    assert verified.label == "HARDWARE"
    assert verified.claims.tcb_status is TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED
    assert verified.claims.advisories == SGX_ADVISORIES
    assert verified.claims.measurement.hex().startswith("33d8736d")
    assert verified.claims.measurement.hex().endswith("60452fbb")
    assert verified.claims.measurements["mr_enclave"] == verified.claims.measurement
    assert verified.claims.report_data.startswith(b"Hello, world!")
    assert verified.claims.debug is False


def test_tdx_quote_is_accepted_at_its_time(tdx: Evidence) -> None:
    verified = _verify(tdx, _policy(tdx))

    assert verified.tee_type is TeeType.TDX
    assert verified.claims.tcb_status is TcbStatus.UP_TO_DATE
    assert verified.claims.advisories == frozenset()
    assert verified.claims.measurement.hex().startswith("91eb2b44")
    assert verified.claims.measurement.hex().endswith("873118b7")
    assert verified.claims.measurements["mr_td"] == verified.claims.measurement
    assert verified.claims.debug is False


def test_the_tcb_verdict_is_only_known_once_verified(sgx: Evidence) -> None:
    assert sgx.claims.tcb_status is TcbStatus.NOT_REPORTED


def test_sgx_quote_is_refused_by_an_up_to_date_only_offer(sgx: Evidence) -> None:
    with pytest.raises(AttestationRefused) as refused:
        _verify(sgx, _policy(sgx))
    assert refused.value.code is RefusalCode.TCB_OUT_OF_DATE
    assert refused.value.details == {"tcb_status": "ConfigurationAndSWHardeningNeeded"}


def test_sgx_quote_is_refused_when_one_advisory_is_not_accepted(sgx: Evidence) -> None:
    policy = replace(_accepting_policy(sgx), accepted_advisories=frozenset({"INTEL-SA-00289"}))
    with pytest.raises(AttestationRefused) as refused:
        _verify(sgx, policy)
    assert refused.value.code is RefusalCode.TCB_ADVISORY_NOT_ACCEPTED
    assert refused.value.details == {"advisories": ["INTEL-SA-00615"]}


@pytest.mark.parametrize("kind", ["sgx", "tdx"])
def test_quote_is_refused_after_its_collateral_expires(kind: str) -> None:
    evidence = _evidence(kind)
    policy = _accepting_policy(evidence)
    for now in (AFTER_EXPIRY, evidence.claims.validity.not_after):
        with pytest.raises(AttestationRefused) as refused:
            _verify(evidence, policy, now)
        assert refused.value.code is RefusalCode.EXPIRED


@pytest.mark.parametrize("kind", ["sgx", "tdx"])
def test_quote_is_refused_before_its_collateral_is_issued(kind: str) -> None:
    evidence = _evidence(kind)
    with pytest.raises(AttestationRefused) as refused:
        _verify(evidence, _accepting_policy(evidence), unix(1700000000))
    assert refused.value.code is RefusalCode.NOT_YET_VALID


@pytest.mark.parametrize("kind", ["sgx", "tdx"])
def test_our_validity_window_is_the_one_dcap_qvl_enforces(kind: str) -> None:
    """The window computed from the collateral is accepted at its last second and refused just
    before and just after: the verdict never depends on which of us judges time."""
    evidence = _evidence(kind)
    policy = _accepting_policy(evidence)
    window = evidence.claims.validity
    assert _verify(evidence, policy, window.not_before)
    assert _verify(evidence, policy, window.not_after - timedelta(seconds=1))


def _quote_positions(quote: bytes, tee_type: TeeType) -> dict[str, int]:
    body = 384 if tee_type is TeeType.SGX else 584
    signed = 48 + body
    signature = signed + 4
    certification = signature + 128
    pem = quote.find(b"-----BEGIN CERTIFICATE-----")
    root = quote.rfind(b"-----BEGIN CERTIFICATE-----")
    positions = {
        "header version": 0,
        "header attestation key type": 2,
        "header tee type": 4,
        "header qe vendor id": 12,
        "report body (first byte)": 48,
        "report body (middle)": 48 + body // 2,
        "report data": signed - 1,
        "signature length": signed,
        "isv report signature": signature + 10,
        "attestation key": signature + 64 + 10,
        "certification data type": certification,
        "pck leaf certificate": pem + 400,
        "pck leaf certificate newline": quote.find(b"\n", pem + 100),
        "root certificate": root + 300,
        "final byte": len(quote) - 1,
    }
    if tee_type is TeeType.SGX:
        positions |= {
            "sgx mr_enclave": 48 + 64 + 10,
            "sgx attributes (debug bit)": 48 + 48,
            "qe report": certification + 100,
            "qe report signature": certification + 384 + 10,
            "qe authentication data": certification + 384 + 64 + 2 + 5,
        }
    else:
        positions |= {
            "tdx mr_td": 48 + 136 + 10,
            "tdx td_attributes (debug bit)": 48 + 120,
            "qe report": certification + 6 + 100,
            "qe report signature": certification + 6 + 384 + 10,
            "zero padding after the quote": 48 + body + 4 + struct.unpack_from("<I", quote, signed)[0] + 10,
        }
    return positions


@pytest.mark.parametrize("kind", ["sgx", "tdx"])
def test_quote_with_one_bit_flipped_at_a_meaningful_place_is_refused(kind: str) -> None:
    evidence = _evidence(kind)
    policy = replace(_accepting_policy(evidence), allow_debug=False)
    collateral = evidence.collateral[0]
    for where, position in _quote_positions(evidence.raw, evidence.tee_type).items():
        assert 0 <= position < len(evidence.raw), where
        for bit in (0, 1, 5, 7):
            with pytest.raises(AttestationRefused):
                _verify(
                    dcap.evidence_from_quote(flip(evidence.raw, position, bit), collateral, ephemeral_public_key=KEY),
                    policy,
                )


@pytest.mark.parametrize("kind", ["sgx", "tdx"])
def test_no_single_bit_flip_across_the_quote_is_accepted(kind: str) -> None:
    """dcap-qvl alone accepts quotes whose PEM whitespace, embedded root certificate,
    certification-data type or zero padding were changed; the framing checks refuse them."""
    evidence = _evidence(kind)
    policy = _accepting_policy(evidence)
    collateral = evidence.collateral[0]
    accepted = []
    for position in spread(len(evidence.raw)):
        try:
            _verify(
                dcap.evidence_from_quote(flip(evidence.raw, position), collateral, ephemeral_public_key=KEY), policy
            )
        except AttestationRefused:
            continue
        accepted.append(position)
    assert accepted == []


def _flip_in_field(collateral: bytes, field: str, offset_in_value: int) -> bytes:
    """Flip the low bit of one base64 or hex character inside a collateral field's value (never
    in a JSON escape, which would only make the JSON unreadable)."""
    position = collateral.index(f'"{field}": "'.encode()) + len(field) + 5 + offset_in_value
    while not chr(collateral[position]).isalnum() or collateral[position - 1 : position] == b"\\":
        position += 1
    return flip(collateral, position, 0)


@pytest.mark.parametrize(
    ("field", "offset"),
    [
        ("tcb_info", 120),
        ("tcb_info_signature", 40),
        ("qe_identity", 60),
        ("qe_identity_signature", 100),
        ("pck_crl", 300),
        ("root_ca_crl", 200),
        ("tcb_info_issuer_chain", 500),  # the TCB signing certificate
        ("tcb_info_issuer_chain", 1500),  # the root, which dcap-qvl alone does not read
        ("qe_identity_issuer_chain", 1500),
        ("pck_crl_issuer_chain", 400),  # the PCK CA, which dcap-qvl alone does not read
        ("pck_crl_issuer_chain", 1500),
    ],
)
@pytest.mark.parametrize("kind", ["sgx", "tdx"])
def test_collateral_with_one_bit_flipped_is_refused(kind: str, field: str, offset: int) -> None:
    evidence = _evidence(kind)
    flipped = _flip_in_field(evidence.collateral[0], field, offset)
    assert flipped != evidence.collateral[0]
    with pytest.raises(AttestationRefused):
        _verify(dcap.evidence_from_quote(evidence.raw, flipped, ephemeral_public_key=KEY), _accepting_policy(evidence))


def test_collateral_of_another_platform_is_refused(sgx: Evidence, tdx: Evidence) -> None:
    crossed = replace(sgx, collateral=tdx.collateral)
    with pytest.raises(AttestationRefused) as refused:
        _verify(crossed, _accepting_policy(sgx))
    assert refused.value.code is not RefusalCode.EXPIRED


def test_quote_bound_to_other_report_data_is_refused(sgx: Evidence) -> None:
    with pytest.raises(AttestationRefused) as refused:
        verify_against(
            sgx, _accepting_policy(sgx), expected_report_data=b"Hello, world?".ljust(64, b"\0"), now=QUOTE_TIME
        )
    assert refused.value.code is RefusalCode.REPORT_DATA_MISMATCH


def test_mr_enclave_not_on_the_allow_list_is_refused(sgx: Evidence) -> None:
    policy = replace(_accepting_policy(sgx), allowed_measurements=frozenset({(TeeType.TDX, sgx.claims.measurement)}))
    with pytest.raises(AttestationRefused) as refused:
        _verify(sgx, policy)
    assert refused.value.code is RefusalCode.MEASUREMENT_NOT_ALLOWED


def test_refusal_carries_no_dcap_qvl_text(sgx: Evidence) -> None:
    flipped = dcap.evidence_from_quote(flip(sgx.raw, 48 + 64 + 10), sgx.collateral[0], ephemeral_public_key=KEY)
    with pytest.raises(AttestationRefused) as refused:
        _verify(flipped, _accepting_policy(sgx))
    assert refused.value.code is RefusalCode.SIGNATURE_INVALID
    assert "Verification failed" not in str(refused.value)
    assert str(refused.value) == f"{refused.value.code}: {refused.value.message}"
