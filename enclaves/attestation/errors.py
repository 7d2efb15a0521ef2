"""One refusal type for every attestation check, with a stable code per failed check.

Messages are fixed per code and never carry evidence bytes, keys or library error text: the
custodian may hand them to an API caller. ``details`` holds only public, non-secret facts (a TCB
status name, advisory ids, the TEE type) that help an operator see why.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class RefusalCode(enum.StrEnum):
    EVIDENCE_MALFORMED = "evidence_malformed"
    TEE_TYPE_NOT_ALLOWED = "tee_type_not_allowed"
    SANDBOX_NOT_ALLOWED = "sandbox_not_allowed"
    REPORT_DATA_MISMATCH = "report_data_mismatch"
    CHAIN_UNTRUSTED = "chain_untrusted"
    SIGNATURE_INVALID = "signature_invalid"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    TCB_OUT_OF_DATE = "tcb_out_of_date"
    TCB_REVOKED = "tcb_revoked"
    TCB_ADVISORY_NOT_ACCEPTED = "tcb_advisory_not_accepted"
    DEBUG_ENCLAVE = "debug_enclave"
    MEASUREMENT_NOT_ALLOWED = "measurement_not_allowed"
    NONCE_UNKNOWN = "nonce_unknown"
    NONCE_EXPIRED = "nonce_expired"
    NONCE_REUSED = "nonce_reused"


MESSAGES: Mapping[RefusalCode, str] = {
    RefusalCode.EVIDENCE_MALFORMED: "The attestation evidence could not be parsed.",
    RefusalCode.TEE_TYPE_NOT_ALLOWED: "This offer does not accept evidence from this TEE type.",
    RefusalCode.SANDBOX_NOT_ALLOWED: "This offer does not allow sandbox (SIMULATED) execution.",
    RefusalCode.REPORT_DATA_MISMATCH: "The evidence is not bound to this nonce, enclave key and job manifest.",
    RefusalCode.CHAIN_UNTRUSTED: "The evidence does not chain to a pinned root of trust.",
    RefusalCode.SIGNATURE_INVALID: "A signature over the evidence does not verify.",
    RefusalCode.NOT_YET_VALID: "The evidence or its collateral is not valid yet.",
    RefusalCode.EXPIRED: "The evidence or its collateral has expired.",
    RefusalCode.TCB_OUT_OF_DATE: "The platform's TCB status is not accepted by this offer.",
    RefusalCode.TCB_REVOKED: "The platform's TCB has been revoked.",
    RefusalCode.TCB_ADVISORY_NOT_ACCEPTED: "The platform has a security advisory this offer does not accept.",
    RefusalCode.DEBUG_ENCLAVE: "The enclave runs in debug mode, which this offer does not allow.",
    RefusalCode.MEASUREMENT_NOT_ALLOWED: "The enclave's measurement is not on this offer's allow-list.",
    RefusalCode.NONCE_UNKNOWN: "The attestation nonce was not issued by this custodian.",
    RefusalCode.NONCE_EXPIRED: "The attestation nonce has expired.",
    RefusalCode.NONCE_REUSED: "The attestation nonce has already been used.",
}


class AttestationRefused(Exception):
    """Raised by the first check that fails; ``code`` says which one."""

    def __init__(self, code: RefusalCode, details: Mapping[str, object] | None = None) -> None:
        self.code = code
        self.message = MESSAGES[code]
        self.details: dict[str, object] = dict(details or {})
        super().__init__(f"{code}: {self.message}")
