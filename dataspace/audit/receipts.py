"""Checking a release receipt with nothing but the chain (issue 12).

A receipt is the custodian's EIP-191 signature over its canonical JSON (``compute.receipts``).
It is the platform's only if its signer was the custodian's registered receipt address when it
was made, and it is the receipt the chain settled the job with:

- the receipt's block is the block that settled its job (``JobSettled``, whose attestation hash
  is the signed receipt's SHA-256). The custodian signs after the use was recorded
  (``UsageRecorded``) and before the settlement, so the signer must have been the custodian at
  some block of that window: a rotation between the two leaves the old key's receipts valid;
- who was the custodian when is read from CustodianRegistry (its rotation history), never from
  the platform's database or settings: an address the registry never held is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataspace.chain import agents, gateway
from dataspace.compute import receipts
from dataspace.errors import DomainError, ErrorCode


@dataclass(frozen=True)
class ReceiptCheck:
    job_id: str
    custodian: str
    recorded_block: int
    settled_block: int
    custodian_valid_from: int
    custodian_valid_until: int | None


def _job_id(receipt: dict[str, Any]) -> bytes:
    try:
        job_id = bytes.fromhex(str(receipt["job_id"]).removeprefix("0x"))
        if len(job_id) != 32 or not str(receipt["signature"]):
            raise ValueError
    except (KeyError, ValueError):
        raise DomainError(
            "A receipt carries its job_id (32 bytes, 0x hex) and the custodian's signature.",
            code=ErrorCode.VALIDATION_FAILED,
        ) from None
    return job_id


def receipt_verify(*, receipt: dict[str, Any]) -> ReceiptCheck:
    """Raises ``DomainError`` naming what is wrong: a malformed or mislabelled signature
    (``signature_invalid``), a job the chain never settled with this receipt
    (``receipt_not_on_chain``), or a signer that was not the registered custodian in the
    receipt's window (``custodian_unknown``). Returns what was checked."""
    job_id = _job_id(receipt)
    try:
        signer = receipts.receipt_signer(receipt)
    except Exception:
        raise DomainError("The receipt's signature is malformed.", code=ErrorCode.SIGNATURE_INVALID) from None
    if str(receipt.get("custodian", "")).lower() != signer.lower():
        raise DomainError(
            f"The receipt names custodian {receipt.get('custodian')!r} but was signed by {signer}.",
            code=ErrorCode.SIGNATURE_INVALID,
        )
    indexed = {"jobId": job_id}
    recorded = gateway.latest_log("UsageAgreements", "UsageRecorded", indexed=indexed)
    settled = gateway.latest_log("UsageAgreements", "JobSettled", indexed=indexed)
    if recorded is None or settled is None:
        raise DomainError(f"The chain has no settlement of job 0x{job_id.hex()}.", code=ErrorCode.RECEIPT_NOT_ON_CHAIN)
    try:
        pinned = receipts.settled_attestation(receipt)
    except ValueError:  # a tee receipt whose attestation hash is not hex
        pinned = b""
    if bytes(settled["args"]["attestationHash"]) != pinned:
        raise DomainError(
            f"The chain settled job 0x{job_id.hex()} with another receipt (attestation hash differs).",
            code=ErrorCode.RECEIPT_NOT_ON_CHAIN,
        )
    first, last = int(recorded["blockNumber"]), int(settled["blockNumber"])
    history = agents.CustodianRegistryAgent().history()
    periods = [p for p in history if p.address.lower() == signer.lower()]
    if not periods:
        raise DomainError(
            f"{signer} has never been the platform's custodian (CustodianRegistry).",
            code=ErrorCode.CUSTODIAN_UNKNOWN,
        )
    for period in periods:
        if period.valid_from <= last and (period.valid_until is None or period.valid_until > first):
            return ReceiptCheck(
                job_id="0x" + job_id.hex(),
                custodian=signer,
                recorded_block=first,
                settled_block=last,
                custodian_valid_from=period.valid_from,
                custodian_valid_until=period.valid_until,
            )
    raise DomainError(
        f"{signer} was not the platform's custodian between blocks {first} and {last} (CustodianRegistry).",
        code=ErrorCode.CUSTODIAN_UNKNOWN,
    )
