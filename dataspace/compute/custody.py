"""The key custodian: the only code path that unwraps a CKKS secret key.

``release`` decides whether a computed job's result may be released and, if so, returns it; it
changes nothing itself (``jobs`` records the release and sends the settlement). It releases only
when
1. the chain (the contract, not our database) says the job's usage is recorded;
2. the result ciphertext is byte for byte what the HE worker reported;
3. every released number's cohort, counted under encryption, is at least the policy's minimum;
4. the epsilon recorded on chain fits the agreement's privacy budget on chain;
and then it adds the policy's Laplace noise (OpenDP), lets the operation round every number to
its documented precision (a raw CKKS decryption leaks information about the secret key: Li and
Micciancio, 2021), and signs a receipt an auditor can check with any EIP-191 tool.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from dataspace.chain import agents
from dataspace.chain.encoding import epsilon_micro
from dataspace.compute import noise, receipts
from dataspace.compute.he.keys import load_secret_context
from dataspace.compute.he.layout import StoreLayout
from dataspace.compute.he.operations import Aggregate, EncryptedResult, OperationRejected, get_operation
from dataspace.compute.models import EncryptedStore, Job
from dataspace.errors import DomainError, ErrorCode
from dataspace.vault import blobs
from dataspace.vault import services as vault
from dataspace.vault.models import DataKey

ENGINE = "he-ckks (TenSEAL)"


class CustodyRefused(DomainError):
    """The custodian will not decrypt or release this result; ``code`` says why."""


@dataclass(frozen=True)
class Release:
    """A result the custodian let go: the rounded (and noised) answer, the receipt it signed,
    and the two hashes the settlement pins on chain."""

    result: dict[str, Any]
    result_hash: bytes
    receipt: dict[str, Any]
    attestation_hash: bytes


_SECRET_CACHE_SIZE = 4


@lru_cache(maxsize=_SECRET_CACHE_SIZE)
def _secret_context(secret_blob: str, data_key_id: uuid.UUID) -> Any:
    """Kept in the custodian's memory for its next jobs on the same dataset: unsealing and
    deserialising a key set costs more than a whole small job."""
    data_key = DataKey.objects.get(pk=data_key_id)
    with vault.blob_open(blob_name=secret_blob, key=vault.data_key_unwrap(data_key)) as reader:
        return load_secret_context(reader.read())


def _secret_contexts(store: EncryptedStore) -> dict[str, Any]:
    return {key.level: _secret_context(key.secret_blob, key.data_key_id) for key in store.keys.all()}


def _check_chain(job: Job) -> None:
    agent = agents.UsageAgreementsAgent()
    usage = agent.usage(bytes.fromhex(job.chain_job_id[2:]))
    if usage.status != agents.JobStatus.RECORDED or usage.agreement_id != job.agreement.chain_agreement_id:
        raise CustodyRefused(
            f"The chain shows this job as {usage.status.name.lower()}, not recorded.",
            code=ErrorCode.USAGE_NOT_RECORDED,
        )
    if usage.epsilon != epsilon_micro(job.epsilon):
        raise CustodyRefused(
            "The epsilon recorded on chain is not the one the job asked for.", code=ErrorCode.EPSILON_MISMATCH
        )
    assert job.agreement.chain_agreement_id is not None
    on_chain = agent.agreement(job.agreement.chain_agreement_id)
    if on_chain["budget_used"] > on_chain["privacy_budget"] and on_chain["privacy_budget"] > 0:
        raise CustodyRefused("The agreement's privacy budget on chain is spent.", code=ErrorCode.BUDGET_EXHAUSTED)


def _read_result(job: Job) -> EncryptedResult:
    with blobs.open_for_read(job.result_blob) as source:
        data = source.read()
    if hashlib.sha256(data).hexdigest() != job.ciphertext_sha256:
        raise CustodyRefused(
            "The result ciphertext is not the one the HE worker reported.", code=ErrorCode.RESULT_TAMPERED
        )
    return EncryptedResult.from_bytes(data)


def _check_cohorts(aggregates: list[Aggregate], minimum: int) -> None:
    values = {a.name: a.value for a in aggregates}
    for aggregate in aggregates:
        for name in aggregate.cohorts:  # ISSUE-11: every cohort (contributors, low-cardinality values)
            cohort = values.get(name)
            if cohort is None or round(cohort) < minimum:
                raise CustodyRefused(
                    f"The cohort behind {aggregate.name!r} is below the policy's minimum of {minimum} rows.",
                    code=ErrorCode.COHORT_TOO_SMALL,
                )


def release(job: Job) -> Release:
    """Checks, decrypts, noises, rounds and signs a computed job's result.

    Raises ``CustodyRefused`` when the result must not be released (the job is then failed and
    refunded); ``job`` needs its agreement, offer and dataset loaded."""
    _check_chain(job)
    encrypted = _read_result(job)
    store = EncryptedStore.objects.get(pk=job.dataset_id)
    layout = StoreLayout.from_json(store.layout)
    operation = get_operation(job.operation)
    try:  # ISSUE-11: decrypt checks the result's shape first; a mismatch is a refusal, not a retry
        aggregates = operation.decrypt(job.params, layout, encrypted, _secret_contexts(store))
    except OperationRejected as exc:
        raise CustodyRefused(exc.message, code=exc.code) from None
    _check_cohorts(aggregates, job.agreement.offer.min_cohort)
    noisy, noise_applied = noise.add_noise(aggregates, job.epsilon)
    result = operation.finish(job.params, layout, noisy)
    salt = secrets.token_bytes(32)
    result_hash = receipts.result_commitment(result, salt)
    signed = receipts.receipt_sign(
        {
            "job_id": job.chain_job_id,
            "operation": job.operation,
            "parameters": job.params,
            "dataset_sha256": job.dataset.content_sha256,
            "result_sha256": "0x" + result_hash.hex(),
            "result_salt": "0x" + salt.hex(),
            "ciphertext_sha256": job.ciphertext_sha256,
            "noise": noise_applied,
            "engine": ENGINE,
            "custodian": receipts.custodian().address,
        }
    )
    return Release(
        result=result, result_hash=result_hash, receipt=signed, attestation_hash=receipts.attestation_hash(signed)
    )
