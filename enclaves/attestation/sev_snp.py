"""AMD SEV-SNP attestation reports, verified with ``omne-attest`` (pinned at 0.1.0).

``omne-attest`` checks the report's ECDSA P-384 signature under the VCEK, the VCEK <- ASK <- ARK
chain against a pinned ARK, and that the VCEK is this chip's key at this TCB. It does not judge
time, so the validity window here is the intersection of the three certificates' validity. It also
ignores the unused high bytes of the signature fields and the reserved tail of the report; they
must be zero here, so the report has exactly one encoding.

Not checked yet: AMD's CRL for the ASK and VCEKs (published by KDS; this verifier works offline) and
the guest's VMPL (which level an offer should require depends on whether a paravisor owns VMPL 0).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import omne_attest
from cryptography.utils import CryptographyDeprecationWarning

from enclaves.attestation import _x509
from enclaves.attestation.errors import AttestationRefused, RefusalCode
from enclaves.attestation.evidence import Claims, Evidence, Policy, TcbStatus, TeeType, ValidityWindow

# AMD ARK-Milan (the self-signed root of AMD's Milan key chain), SHA-256 of its DER as served by
# AMD's Key Distribution Service at https://kdsintf.amd.com/vcek/v1/Milan/cert_chain; equal to the
# ARK shipped in omne-attest 0.1.0 and to the pin that package publishes (vectors.ARK_SHA256).
AMD_MILAN_ARK_SHA256 = bytes.fromhex("69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd")

SIGNATURE_OFFSET = 0x2A0
SIGNATURE_COMPONENT_FIELD = 72  # r and s each sit little-endian in a 72-byte field
SIGNATURE_COMPONENT_LEN = 48  # of which a P-384 scalar uses 48
SIGNATURE_END = SIGNATURE_OFFSET + 2 * SIGNATURE_COMPONENT_FIELD

_FAILURE_CODES = {
    omne_attest.FailKind.LENGTH: RefusalCode.EVIDENCE_MALFORMED,
    omne_attest.FailKind.VERSION: RefusalCode.EVIDENCE_MALFORMED,
    omne_attest.FailKind.SIGNATURE_ALGO: RefusalCode.EVIDENCE_MALFORMED,
    omne_attest.FailKind.VCEK_PARSE: RefusalCode.EVIDENCE_MALFORMED,
    omne_attest.FailKind.REPORT_SIGNATURE: RefusalCode.SIGNATURE_INVALID,
    omne_attest.FailKind.VCEK_KEY_TYPE: RefusalCode.CHAIN_UNTRUSTED,
    omne_attest.FailKind.CHAIN_SIGNATURE: RefusalCode.CHAIN_UNTRUSTED,
    omne_attest.FailKind.ARK_NOT_PINNED: RefusalCode.CHAIN_UNTRUSTED,
    omne_attest.FailKind.CHIP_ID_MISMATCH: RefusalCode.CHAIN_UNTRUSTED,
    omne_attest.FailKind.TCB_MISMATCH: RefusalCode.CHAIN_UNTRUSTED,
    omne_attest.FailKind.MISSING_EXTENSION: RefusalCode.CHAIN_UNTRUSTED,
}


@contextmanager
def _omne_failures() -> Iterator[None]:
    """Translate omne-attest's failures at the boundary; its messages never leave this module."""
    try:
        with warnings.catch_warnings():
            # AMD's VCEKs have serial number 0; see _x509.load_der.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            yield
    except omne_attest.Fail as exc:
        raise AttestationRefused(_FAILURE_CODES.get(exc.kind, RefusalCode.SIGNATURE_INVALID)) from exc


def _parse(report: bytes) -> omne_attest.Report:
    with _omne_failures():
        parsed = omne_attest.Report.parse(report)
    unused = (
        report[SIGNATURE_OFFSET + SIGNATURE_COMPONENT_LEN : SIGNATURE_OFFSET + SIGNATURE_COMPONENT_FIELD]
        + report[SIGNATURE_END - SIGNATURE_COMPONENT_FIELD + SIGNATURE_COMPONENT_LEN : SIGNATURE_END]
        + report[SIGNATURE_END:]
    )
    if any(unused):
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED, {"reason": "reserved bytes are not zero"})
    return parsed


def _claims(report: omne_attest.Report, certificates: tuple[bytes, ...]) -> Claims:
    tcb = report.reported_tcb
    return Claims(
        measurement=bytes(report.measurement),
        measurements={
            "measurement": bytes(report.measurement),
            "host_data": bytes(report.host_data),
            "id_key_digest": bytes(report.id_key_digest),
            "author_key_digest": bytes(report.author_key_digest),
            "family_id": bytes(report.family_id),
            "image_id": bytes(report.image_id),
        },
        signer=bytes(report.id_key_digest),
        debug=bool(report.policy & omne_attest.POLICY_DEBUG),
        tcb_status=TcbStatus.NOT_REPORTED,
        advisories=frozenset(),
        report_data=bytes(report.report_data),
        validity=ValidityWindow.intersect(_x509.window_of([_x509.load_der(der) for der in certificates])),
        tcb_components=(
            ("boot_loader", int(tcb.boot_loader)),
            ("tee", int(tcb.tee)),
            ("snp", int(tcb.snp)),
            ("microcode", int(tcb.microcode)),
        ),
    )


def evidence_from_report(
    report: bytes, *, vcek: bytes, ask: bytes, ark: bytes, ephemeral_public_key: bytes
) -> Evidence:
    """Parse a 1,184-byte ATTESTATION_REPORT with the chip's VCEK and AMD's ASK and ARK (DER)."""
    certificates = (vcek, ask, ark)
    return Evidence(
        tee_type=TeeType.SEV_SNP,
        raw=report,
        claims=_claims(_parse(report), certificates),
        ephemeral_public_key=ephemeral_public_key,
        collateral=certificates,
    )


def check_signatures(evidence: Evidence, policy: Policy, now: datetime) -> Claims:
    """AMD's chain to the pinned ARK, the VCEK's binding to this chip and TCB, and the report's
    signature; returns the authenticated claims. Time is left to ``verify``: omne-attest has none."""
    if len(evidence.collateral) != 3:
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED, {"reason": "VCEK, ASK and ARK are required"})
    vcek, ask, ark = evidence.collateral
    report = _parse(evidence.raw)
    claims = _claims(report, evidence.collateral)
    if claims.validity.empty:
        raise AttestationRefused(RefusalCode.CHAIN_UNTRUSTED)
    with _omne_failures():
        omne_attest.verify_chain(vcek, ask, ark, AMD_MILAN_ARK_SHA256)
        report.verify_vcek_binding(vcek)
        report.verify_signature(vcek)
    return claims
