"""Checking a release receipt with nothing but the chain (issue 12).

A receipt is the custodian's EIP-191 signature over its canonical JSON (``compute.receipts``).
It is the platform's only if its signer was the custodian's registered receipt address when it
was made, and it is the receipt the chain settled the job with:

- the receipt's block is the block that settled its job (``JobSettled``, whose attestation hash
  is the signed receipt's SHA-256). The custodian signs after the use was recorded
  (``UsageRecorded``) and before the settlement, so the signer must have been the custodian at
  some block of that window: a rotation between the two leaves the old key's receipts valid;
- ISSUE-14: a job settled in a batch has no JobSettled; its receipt carries the batch's id and the
  job's Merkle proof (unsigned: the chain proves it). The leaf is recomputed here from the receipt
  (job id, result commitment, attestation hash), never taken from it, and must prove against the
  batch's root on chain (``verifyReceipt``); the batch's BatchSettled must name the job, and its
  block is the settlement's;
- who was the custodian when is read from CustodianRegistry (its rotation history), never from
  the platform's database or settings: an address the registry never held is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataspace.chain import agents, gateway, merkle
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
    batch_id: int | None = None


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
    if recorded is None:
        raise DomainError(f"The chain has no settlement of job 0x{job_id.hex()}.", code=ErrorCode.RECEIPT_NOT_ON_CHAIN)
    try:
        pinned = receipts.settled_attestation(receipt)
    except ValueError:  # a tee receipt whose attestation hash is not hex
        pinned = b""
    batch_id: int | None = None
    settled: dict[str, Any] | None
    if receipts.BATCH_FIELD in receipt:
        batch_id, settled = _batch_settlement(job_id, receipt, pinned)
    else:
        settled = gateway.latest_log("UsageAgreements", "JobSettled", indexed=indexed)
        if settled is None:
            raise DomainError(
                f"The chain has no settlement of job 0x{job_id.hex()}.", code=ErrorCode.RECEIPT_NOT_ON_CHAIN
            )
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
                batch_id=batch_id,
            )
    raise DomainError(
        f"{signer} was not the platform's custodian between blocks {first} and {last} (CustodianRegistry).",
        code=ErrorCode.CUSTODIAN_UNKNOWN,
    )


def _word(value: Any) -> bytes:
    word = bytes.fromhex(str(value).removeprefix("0x"))
    if len(word) != merkle.WORD:
        raise ValueError
    return word


def _batch_settlement(job_id: bytes, receipt: dict[str, Any], pinned: bytes) -> tuple[int, dict[str, Any]]:
    """ISSUE-14: the batch's id and its BatchSettled log, once the receipt's leaf proves against
    the batch's root on chain and the batch names the job."""
    section = receipt[receipts.BATCH_FIELD]
    try:
        batch_id = int(section["batch_id"])
        proof = [_word(step) for step in section["proof"]]
        result_hash = _word(receipt["result_sha256"])
        if batch_id <= 0 or len(pinned) != merkle.WORD or not isinstance(section["proof"], list):
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise DomainError(
            "A batched receipt carries batch.batch_id (a positive integer), batch.proof (32-byte 0x hex words) "
            "and its result_sha256.",
            code=ErrorCode.VALIDATION_FAILED,
        ) from None
    leaf = merkle.receipt_leaf(job_id, result_hash, pinned)
    if not agents.UsageAgreementsAgent().verify_receipt(batch_id=batch_id, leaf=leaf, proof=proof):
        raise DomainError(
            f"The chain's batch {batch_id} does not hold this receipt of job 0x{job_id.hex()} (Merkle proof refused).",
            code=ErrorCode.RECEIPT_NOT_ON_CHAIN,
        )
    settled = gateway.latest_log("UsageAgreements", "BatchSettled", indexed={"batchId": batch_id})
    if settled is None or job_id not in {bytes(j) for j in settled["args"]["jobIds"]}:
        raise DomainError(
            f"The chain's batch {batch_id} did not settle job 0x{job_id.hex()}.", code=ErrorCode.RECEIPT_NOT_ON_CHAIN
        )
    return batch_id, settled
