"""Checking a job against the chain, trusting nothing the platform says that the chain or the
custodian's key can tell instead.

- the use: the chain recorded this job under the job's agreement, with the operation, purpose,
  parameters' hash and privacy loss the job claims, signed by the agreement's consumer;
- the settlement: the salted commitment on chain equals sha256(salt || result) recomputed from
  the result and the receipt's salt; the attestation hash equals the signed receipt's hash (for
  an algorithm job, the enclave's attestation hash the signed receipt names). A job settled in a
  batch (its receipt carries ``batch``, unsigned) has no hashes of its own on chain: the leaf
  keccak256(jobId, commitment, attestation hash), recomputed here from the result and the
  receipt, must prove against the batch's root (``verifyReceipt``), and the batch must name the
  job;
- the receipt: its signature recovers to the custodian CustodianRegistry names for the
  settlement's block (``custodianAt``, asked through the consumer's node), and to one of the
  addresses the consumer pinned, if any;
- the dataset: the receipt's content hash is the one the DatasetRegistry holds for the dataset.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils.crypto import keccak

from redlake_client import encoding
from redlake_client.errors import VerificationFailed
from redlake_client.models import Job, Space


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class VerificationReport:
    job_id: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.job_id, "ok": self.ok, "checks": [c.__dict__ for c in self.checks]}


def custodian_at_settlement(client: Any, space: Space, chain: Any, block: int) -> tuple[str | None, str]:
    """The custodian address valid at the settlement's block, asked of CustodianRegistry through
    the consumer's own node (``custodianAt``), never taken from the platform's list; and where the
    registry's address came from (pinned by you with ``REDLAKE_CUSTODIAN_REGISTRY``, else the
    contract ``GET /api/space/`` names, on the chain id you checked)."""
    if client.custodian_registry:
        registry, source = str(client.custodian_registry), "CustodianRegistry pinned by you"
    else:
        registry, source = space.address("CustodianRegistry"), "CustodianRegistry of the space"
    return chain.custodian_at(registry, block), f"{source} at {registry}, block {block}"


BATCH_FIELD = "batch"  # the batch proof beside a receipt settled in a batch: not signed


def settled_attestation(receipt: dict[str, Any]) -> bytes:
    """What JobSettled.attestationHash pins for a receipt: an algorithm job's enclave attestation
    (named under ``tee`` in the receipt the custodian signs), otherwise the receipt's own hash."""
    tee = receipt.get("tee")
    if receipt.get("engine") == "tee" and isinstance(tee, dict) and isinstance(tee.get("attestation_hash"), str):
        try:
            return bytes.fromhex(tee["attestation_hash"].removeprefix("0x"))
        except ValueError:
            return b""
    signed = {k: v for k, v in receipt.items() if k != BATCH_FIELD}
    return hashlib.sha256(encoding.canonical_json(signed)).digest()


def receipt_signer(receipt: dict[str, Any]) -> str:
    body = {k: v for k, v in receipt.items() if k not in ("signature", BATCH_FIELD)}
    return str(Account.recover_message(encode_defunct(encoding.canonical_json(body)), signature=receipt["signature"]))


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def verify(client: Any, job: Job, *, raise_on_failure: bool = True) -> VerificationReport:
    report = VerificationReport(str(job.id))
    if job.status not in ("settled", "withheld") or job.receipt is None or job.chain_job_id is None:
        report.add("settled", False, f"the job is {job.status}: nothing settled to verify")
        return _finish(report, raise_on_failure)
    space = client.space()
    chain = client.chain()
    agreement = client.agreement(job.agreement)
    job_id = encoding.unhex(job.chain_job_id)
    receipt = job.receipt

    # 1. the use recorded on chain
    agreement_id, status, loss = chain.usage_of(job_id)
    onchain_agreement = chain.agreement(agreement_id)
    report.add(
        "usage.agreement",
        agreement_id == agreement.chain_agreement_id,
        f"chain records agreement {agreement_id}; the job's is {agreement.chain_agreement_id}",
    )
    report.add("usage.status", status == "settled", f"chain status {status}")
    recorded = chain.event("UsageRecorded", jobId=job_id)
    if recorded is None:
        report.add("usage.recorded", False, "no UsageRecorded event for this job")
    else:
        args = recorded.args
        expect = {
            "operation": encoding.label_hash(job.operation),
            "purpose": encoding.label_hash(job.purpose),
            "paramsHash": encoding.params_hash(job.params),
        }
        for name, value in expect.items():
            report.add(f"usage.{name}", bytes(args[name]) == value, f"chain {_hex(bytes(args[name]))}")
        report.add("usage.privacy_loss", int(args["privacyLoss"]) == loss, f"{loss} nano-rho")
        signature = chain.usage_signature(recorded.tx_hash)
        signer = _usage_signer(space, chain, args, job_id, agreement_id, signature, recorded.tx_hash)
        report.add(
            "usage.signed_by_consumer",
            signer.lower() == str(onchain_agreement["consumer"]).lower(),
            f"signed by {signer}; the agreement's consumer is {onchain_agreement['consumer']}",
        )

    # 2. the settlement's salted commitment and attestation hash
    settled = chain.event("JobSettled", jobId=job_id)
    released = job.result if job.status == "settled" else {"withheld": receipt.get("withheld")}
    salt = encoding.unhex(str(receipt.get("result_salt", "0x")))
    recomputed = encoding.result_commitment(released, salt)
    if settled is None and isinstance(receipt.get(BATCH_FIELD), dict):
        settled = _batch_settlement(report, chain, job_id, recomputed, settled_attestation(receipt), receipt)
    elif settled is None:
        report.add("settlement.recorded", False, "no JobSettled event for this job")
    else:
        on_chain = bytes(settled.args["resultHash"])
        report.add(
            "settlement.result_commitment",
            on_chain == recomputed,
            f"chain {_hex(on_chain)}; sha256(salt || result) = {_hex(recomputed)}",
        )
        attestation = settled_attestation(receipt)
        report.add(
            "settlement.receipt_hash",
            bytes(settled.args["attestationHash"]) == attestation,
            f"chain {_hex(bytes(settled.args['attestationHash']))}",
        )

    # 3. the receipt: signed by the custodian the chain names for the settlement's block (and, if
    #    you pinned custodians, by one of those), about this job
    try:
        signer = receipt_signer(receipt)
    except Exception:
        signer = "(unrecoverable)"
    if settled is None:
        report.add("receipt.custodian", False, f"signed by {signer}; no settlement block to ask the chain about")
    else:
        custodian, source = custodian_at_settlement(client, space, chain, settled.block_number)
        pinned = {a.lower() for a in client.pinned_custodians or []}
        ok = custodian is not None and signer.lower() == custodian.lower()
        detail = f"signed by {signer}; the chain's custodian is {custodian} ({source})"
        if pinned:
            ok = ok and signer.lower() in pinned
            detail += "; and must be one you pinned"
        report.add("receipt.custodian", ok, detail)
    report.add("receipt.job", str(receipt.get("job_id", "")).lower() == job.chain_job_id.lower(), "job id")
    report.add(
        "receipt.parameters",
        receipt.get("operation") == job.operation and receipt.get("parameters") == job.params,
        "operation and parameters",
    )

    # 4. the dataset's content hash against the registry; its id on chain is bound to the provider
    #    the agreement on chain names (not the platform's word)
    provider = str(onchain_agreement["provider"])
    registered = chain.dataset(encoding.dataset_chain_id(job.dataset, provider=provider))
    content = str(receipt.get("dataset_sha256", "")).removeprefix("0x").lower()
    report.add(
        "dataset.content_hash",
        registered["content_hash"].hex() == content,
        f"registry {_hex(registered['content_hash'])} for {job.dataset} of provider {provider}",
    )
    return _finish(report, raise_on_failure)


def _batch_settlement(
    report: VerificationReport,
    chain: Any,
    job_id: bytes,
    commitment: bytes,
    attestation: bytes,
    receipt: dict[str, Any],
) -> Any:
    """The BatchSettled event of the receipt's batch, once the leaf recomputed from the result and
    the receipt proves against the batch's root on chain; None (and a failed check) otherwise."""
    section = receipt[BATCH_FIELD]
    try:
        batch_id = int(section["batch_id"])
        proof = [encoding.unhex(str(step)) for step in section["proof"]]
        if len(attestation) != 32 or any(len(step) != 32 for step in proof):
            raise ValueError
    except (KeyError, TypeError, ValueError):
        report.add("settlement.batch_inclusion", False, "the receipt's batch proof is malformed")
        return None
    leaf = keccak(job_id + commitment + attestation)
    included = chain.verify_receipt(batch_id, leaf, proof)
    report.add(
        "settlement.batch_inclusion",
        included,
        f"verifyReceipt(batch {batch_id}, keccak256(jobId, sha256(salt || result), receipt hash)) on chain",
    )
    batch = chain.event("BatchSettled", batchId=batch_id)
    named = batch is not None and job_id in {bytes(j) for j in batch.args["jobIds"]}
    report.add("settlement.batch_names_job", named, f"BatchSettled of batch {batch_id}")
    return batch if included and named else None


def _usage_signer(
    space: Space, chain: Any, args: dict[str, Any], job_id: bytes, agreement_id: int, signature: bytes, tx_hash: str
) -> str:
    tx = chain.w3.eth.get_transaction(tx_hash)
    _, call = chain.usage.decode_function_input(tx["input"])
    message = {
        "agreementId": agreement_id,
        "jobId": job_id,
        "purpose": bytes(args["purpose"]),
        "operation": bytes(args["operation"]),
        "paramsHash": bytes(args["paramsHash"]),
        "privacyLoss": int(args["privacyLoss"]),
        "nonce": int.from_bytes(job_id, "big") & (2**128 - 1),
        "deadline": int(call["deadline"]),
    }
    types = {
        "Usage": [
            {"name": "agreementId", "type": "uint256"},
            {"name": "jobId", "type": "bytes32"},
            {"name": "purpose", "type": "bytes32"},
            {"name": "operation", "type": "bytes32"},
            {"name": "paramsHash", "type": "bytes32"},
            {"name": "privacyLoss", "type": "uint64"},
            {"name": "nonce", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
        ]
    }
    domain = {
        "name": "Redlake UsageAgreements",
        "version": "1",
        "chainId": chain.chain_id,
        "verifyingContract": chain.usage.address,
    }
    try:
        return str(Account.recover_message(encode_typed_data(domain, types, message), signature=signature))
    except Exception:
        return "(unrecoverable)"


def _finish(report: VerificationReport, raise_on_failure: bool) -> VerificationReport:
    if raise_on_failure and not report.ok:
        failed = ", ".join(c.name for c in report.checks if not c.ok)
        raise VerificationFailed(f"Verification of job {report.job_id} failed: {failed}.", report)
    return report
