"""The SEV-SNP verifier on the real report and AMD Milan chain shipped in omne-attest 0.1.0.

The README gives no time for this report; its VCEK was issued on 2026-08-28 and expires on
2033-08-28, so it is verified at 2026-09-01. Its guest was launched with the debug bit set:
a no-debug policy refuses it, and only a debug-allowing policy (here, in tests) accepts it.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from omne_attest import vectors

from enclaves.attestation import AttestationRefused, Policy, RefusalCode, TcbStatus, TeeType, sev_snp, verify_against
from enclaves.attestation.evidence import Evidence, VerifiedClaims
from tests.support.attestation import flip, utc

REPORT_TIME = utc("2026-09-01T00:00:00Z")
KEY = b"enclave ephemeral key (unused by this report)"


def _evidence(report: bytes | None = None, *, vcek: bytes | None = None, ask: bytes | None = None) -> Evidence:
    return sev_snp.evidence_from_report(
        vectors.attestation() if report is None else report,
        vcek=vectors.vcek() if vcek is None else vcek,
        ask=vectors.ask() if ask is None else ask,
        ark=vectors.ark(),
        ephemeral_public_key=KEY,
    )


@pytest.fixture(scope="module")
def evidence() -> Evidence:
    return _evidence()


def _policy(evidence: Evidence, *, allow_debug: bool = False) -> Policy:
    return Policy(
        allowed_tee_types=frozenset({TeeType.SEV_SNP}),
        allowed_measurements=frozenset({(TeeType.SEV_SNP, evidence.claims.measurement)}),
        allow_debug=allow_debug,
    )


def _verify(evidence: Evidence, policy: Policy, now: datetime = REPORT_TIME) -> VerifiedClaims:
    return verify_against(evidence, policy, expected_report_data=evidence.claims.report_data, now=now)


def test_the_pinned_ark_is_amds_milan_root_as_shipped() -> None:
    assert hashlib.sha256(vectors.ark()).digest() == sev_snp.AMD_MILAN_ARK_SHA256
    assert vectors.ARK_SHA256 == sev_snp.AMD_MILAN_ARK_SHA256


def test_debug_report_is_refused_by_a_no_debug_policy(evidence: Evidence) -> None:
    assert evidence.claims.debug is True
    with pytest.raises(AttestationRefused) as refused:
        _verify(evidence, _policy(evidence))
    assert refused.value.code is RefusalCode.DEBUG_ENCLAVE


def test_report_passes_every_other_check_under_a_debug_allowing_policy(evidence: Evidence) -> None:
    verified = _verify(evidence, _policy(evidence, allow_debug=True))

    assert verified.tee_type is TeeType.SEV_SNP
    assert verified.label == "HARDWARE"
    assert verified.claims.measurement.hex().startswith("b07af962")
    assert verified.claims.report_data.startswith(bytes([1, 2, 3, 4, 5]))
    assert verified.claims.tcb_status is TcbStatus.NOT_REPORTED
    assert dict(verified.claims.tcb_components) == {"boot_loader": 2, "tee": 0, "snp": 5, "microcode": 68}


def test_report_is_refused_once_its_vcek_expires(evidence: Evidence) -> None:
    policy = _policy(evidence, allow_debug=True)
    assert evidence.claims.validity.not_after == utc("2033-08-28T16:41:28Z")
    for now in (evidence.claims.validity.not_after, utc("2040-01-01T00:00:00Z")):
        with pytest.raises(AttestationRefused) as refused:
            _verify(evidence, policy, now)
        assert refused.value.code is RefusalCode.EXPIRED


def test_report_is_refused_before_its_vcek_was_issued(evidence: Evidence) -> None:
    with pytest.raises(AttestationRefused) as refused:
        _verify(
            evidence, _policy(evidence, allow_debug=True), evidence.claims.validity.not_before - timedelta(seconds=1)
        )
    assert refused.value.code is RefusalCode.NOT_YET_VALID


def test_no_single_bit_flip_anywhere_in_the_report_is_accepted(evidence: Evidence) -> None:
    """Every byte: the signed part, the signature and the zero bytes omne-attest skips."""
    policy = _policy(evidence, allow_debug=True)
    accepted = []
    for position in range(len(evidence.raw)):
        try:
            _verify(_evidence(flip(evidence.raw, position)), policy)
        except AttestationRefused:
            continue
        accepted.append(position)
    assert accepted == []


@pytest.mark.parametrize(
    ("where", "position", "code"),
    [
        ("guest policy (debug bit)", 0x0A, RefusalCode.SIGNATURE_INVALID),
        ("report data", 0x50, RefusalCode.REPORT_DATA_MISMATCH),
        ("measurement", 0x90, RefusalCode.SIGNATURE_INVALID),
        ("reported tcb", 0x180, RefusalCode.CHAIN_UNTRUSTED),  # no longer the VCEK's TCB
        ("chip id", 0x1A0, RefusalCode.CHAIN_UNTRUSTED),  # no longer the VCEK's chip
        ("signature r", 0x2A0, RefusalCode.SIGNATURE_INVALID),
        ("signature s", 0x2E8 + 47, RefusalCode.SIGNATURE_INVALID),
        ("unused high byte of r", 0x2A0 + 60, RefusalCode.EVIDENCE_MALFORMED),
        ("reserved tail", 0x400, RefusalCode.EVIDENCE_MALFORMED),
    ],
)
def test_report_with_one_bit_flipped_is_refused_with_its_reason(
    evidence: Evidence, where: str, position: int, code: RefusalCode
) -> None:
    policy = _policy(evidence, allow_debug=True)
    with pytest.raises(AttestationRefused) as refused:
        # flipped evidence is checked against the original report data, as a custodian would
        verify_against(
            _evidence(flip(evidence.raw, position, 3)),
            policy,
            expected_report_data=evidence.claims.report_data,
            now=REPORT_TIME,
        )
    assert refused.value.code is code, where


@pytest.mark.parametrize("certificate", ["vcek", "ask"])
@pytest.mark.parametrize("offset", [200, 400, -100, -2])
def test_certificate_with_one_bit_flipped_is_refused(evidence: Evidence, certificate: str, offset: int) -> None:
    original = vectors.vcek() if certificate == "vcek" else vectors.ask()
    flipped = flip(original, offset % len(original), 2)
    with pytest.raises(AttestationRefused) as refused:
        _verify(_evidence(**{certificate: flipped}), _policy(evidence, allow_debug=True))
    assert refused.value.code in {RefusalCode.CHAIN_UNTRUSTED, RefusalCode.EVIDENCE_MALFORMED}


def test_another_root_is_refused(evidence: Evidence) -> None:
    forged = replace(evidence, collateral=(vectors.vcek(), vectors.ask(), flip(vectors.ark(), 300)))
    with pytest.raises(AttestationRefused) as refused:
        _verify(forged, _policy(evidence, allow_debug=True))
    assert refused.value.code is RefusalCode.CHAIN_UNTRUSTED


def test_tcb_below_the_offer_floor_is_refused(evidence: Evidence) -> None:
    at_floor = replace(_policy(evidence, allow_debug=True), minimum_tcb=((TeeType.SEV_SNP, "snp", 5),))
    assert _verify(evidence, at_floor)

    above = replace(at_floor, minimum_tcb=((TeeType.SEV_SNP, "snp", 6),))
    with pytest.raises(AttestationRefused) as refused:
        _verify(evidence, above)
    assert refused.value.code is RefusalCode.TCB_OUT_OF_DATE


def test_a_floor_for_another_tee_type_does_not_apply(evidence: Evidence) -> None:
    policy = replace(_policy(evidence, allow_debug=True), minimum_tcb=((TeeType.SGX, "snp", 99),))
    assert _verify(evidence, policy)
