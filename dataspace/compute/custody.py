"""The key custodian: the only code path that unwraps a CKKS secret key.

``release`` decides whether a computed job's result may be released and, if so, returns it; it
changes nothing itself (``jobs`` records the release and sends the settlement). It releases only
when
1. the chain (the contract, not our database) says the job's usage is recorded, with the job's
   privacy loss and the hash of the parameters the consumer signed (read from its UsageRecorded
   event), and the dataset's privacy budget on chain is not overspent;
2. the parameters computed with are those the consumer signed, normalised;
3. the result ciphertext is byte for byte what the HE worker reported;
4. every released number's cohort, counted under encryption, is at least the policy's minimum;
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

from dataspace.canonical import canonical_json
from dataspace.chain import agents, encoding
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
    job_id = bytes.fromhex(job.chain_job_id[2:])
    usage = agent.usage(job_id)
    if usage.status != agents.JobStatus.RECORDED or usage.agreement_id != job.agreement.chain_agreement_id:
        raise CustodyRefused(
            f"The chain shows this job as {usage.status.name.lower()}, not recorded.",
            code=ErrorCode.USAGE_NOT_RECORDED,
        )
    # ISSUE-11: the job's epsilon is recorded as rho one to one until the accounting speaks rho.
    if usage.privacy_loss != encoding.rho_nano(job.epsilon):
        raise CustodyRefused(
            "The privacy loss recorded on chain is not the one the job asked for.", code=ErrorCode.EPSILON_MISMATCH
        )
    privacy = agent.dataset_privacy(job.dataset_id)
    if privacy.used > privacy.limit:
        raise CustodyRefused("The dataset's privacy budget on chain is overspent.", code=ErrorCode.BUDGET_EXHAUSTED)
    if agent.usage_params_hash(job_id) != encoding.params_hash(job.request_params):
        raise CustodyRefused(
            "The parameters recorded on chain are not the ones the consumer signed for this job.",
            code=ErrorCode.PARAMS_MISMATCH,
        )


def _check_params(job: Job, layout: StoreLayout) -> None:
    """The parameters computed with must be the signed ones, normalised: a job whose ``params``
    were changed after the request would otherwise be decrypted under the consumer's signature."""
    operation = get_operation(job.operation)
    try:
        signed = operation.validate(job.request_params, layout)
    except OperationRejected:
        signed = None
    if signed is None or canonical_json(signed) != canonical_json(job.params):
        raise CustodyRefused(
            "The parameters computed with are not the ones the consumer signed.", code=ErrorCode.PARAMS_MISMATCH
        )


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
        cohort = values.get(aggregate.cohort)
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
    _check_params(job, layout)
    operation = get_operation(job.operation)
    aggregates = operation.decrypt(job.params, layout, encrypted, _secret_contexts(store))
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
