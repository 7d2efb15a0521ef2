"""``verify``: the one decision the key custodian asks before it releases a data key.

Checks, in this order, the first failure raising ``AttestationRefused`` with its code:

0. the TEE type is one this offer accepts (sandbox only when the offer opts in);
1. report data: the evidence binds H(nonce ‖ enclave ephemeral public key ‖ job manifest hash);
2. signature chain to the pinned root of its TEE type (signatures judged inside the evidence's
   validity window, so a forgery and an expiry are told apart);
3. validity at ``now``;
4. TCB status, advisories and TCB floors;
5. debug off;
6. the measurement on this offer's allow-list.

Everything from step 2 on reads only the claims the backend just authenticated, never the
``Evidence.claims`` a caller could have built by hand.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from datetime import datetime

from enclaves.attestation import dcap, nitro, sandbox, sev_snp
from enclaves.attestation.errors import AttestationRefused, RefusalCode
from enclaves.attestation.evidence import (
    Claims,
    Evidence,
    Policy,
    TcbStatus,
    TeeType,
    VerifiedClaims,
    report_data_for,
)

SignatureCheck = Callable[[Evidence, Policy, datetime], Claims]

_BACKENDS: Mapping[TeeType, SignatureCheck] = {
    TeeType.SANDBOX: sandbox.check_signatures,
    TeeType.NITRO: nitro.check_signatures,
    TeeType.SGX: dcap.check_signatures,
    TeeType.TDX: dcap.check_signatures,
    TeeType.SEV_SNP: sev_snp.check_signatures,
}


def verify(evidence: Evidence, policy: Policy, nonce: bytes, now: datetime, *, manifest_hash: bytes) -> VerifiedClaims:
    """Verify evidence presented for one job: ``nonce`` is the challenge the custodian issued
    (consuming it, single use, is the caller's job: see ``nonces``), ``manifest_hash`` the
    SHA-256 of the job manifest the enclave must be running. The returned claims'
    ``ephemeral_public_key`` is the key bound in the report data: wrap the data key to it."""
    if not evidence.ephemeral_public_key:
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED, {"reason": "no ephemeral public key"})
    expected = report_data_for(nonce, evidence.ephemeral_public_key, manifest_hash)
    return verify_against(evidence, policy, expected_report_data=expected, now=now)


def verify_against(evidence: Evidence, policy: Policy, *, expected_report_data: bytes, now: datetime) -> VerifiedClaims:
    """The same checks against report data the caller computed itself (another binding scheme,
    or published evidence whose report data is fixed). The ephemeral key is bound only if that
    report data binds it: for key release use ``verify``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tee_type = evidence.tee_type
    if not policy.allows_tee_type(tee_type):
        code = RefusalCode.SANDBOX_NOT_ALLOWED if tee_type.simulated else RefusalCode.TEE_TYPE_NOT_ALLOWED
        raise AttestationRefused(code, {"tee_type": str(tee_type)})

    if not hmac.compare_digest(evidence.claims.report_data, expected_report_data):
        raise AttestationRefused(RefusalCode.REPORT_DATA_MISMATCH, {"tee_type": str(tee_type)})

    claims = _BACKENDS[tee_type](evidence, policy, now)
    if not hmac.compare_digest(claims.report_data, evidence.claims.report_data):
        raise AttestationRefused(RefusalCode.SIGNATURE_INVALID, {"reason": "report data is not the signed one"})

    if now < claims.validity.not_before:
        raise AttestationRefused(RefusalCode.NOT_YET_VALID, {"not_before": claims.validity.not_before.isoformat()})
    if not claims.validity.contains(now):
        raise AttestationRefused(RefusalCode.EXPIRED, {"not_after": claims.validity.not_after.isoformat()})

    _check_tcb(tee_type, claims, policy)

    if claims.debug and not policy.allow_debug:
        raise AttestationRefused(RefusalCode.DEBUG_ENCLAVE, {"tee_type": str(tee_type)})

    if not policy.allows_measurement(tee_type, claims.measurement):
        raise AttestationRefused(RefusalCode.MEASUREMENT_NOT_ALLOWED, {"tee_type": str(tee_type)})

    return VerifiedClaims(
        tee_type=tee_type,
        claims=claims,
        ephemeral_public_key=evidence.ephemeral_public_key,
        evidence_digest=evidence.digest(),
        verified_at=now,
    )


def _check_tcb(tee_type: TeeType, claims: Claims, policy: Policy) -> None:
    status = claims.tcb_status
    if status is TcbStatus.REVOKED:
        raise AttestationRefused(RefusalCode.TCB_REVOKED, {"tcb_status": str(status)})
    if status is not TcbStatus.NOT_REPORTED and status not in policy.accepted_tcb_statuses:
        raise AttestationRefused(RefusalCode.TCB_OUT_OF_DATE, {"tcb_status": str(status)})
    unaccepted = claims.advisories - policy.accepted_advisories
    if unaccepted:
        raise AttestationRefused(RefusalCode.TCB_ADVISORY_NOT_ACCEPTED, {"advisories": sorted(unaccepted)})
    reported = dict(claims.tcb_components)
    for floor_tee_type, component, floor in policy.minimum_tcb:
        if floor_tee_type is tee_type and reported.get(component, -1) < floor:
            raise AttestationRefused(
                RefusalCode.TCB_OUT_OF_DATE, {"component": component, "reported": reported.get(component)}
            )
