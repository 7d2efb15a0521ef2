"""The key custodian: the only code path that unwraps a CKKS secret key.

``release`` decides whether a computed job's result may be released and, if so, returns it; it
changes nothing itself (``jobs`` records the release and sends the settlement). It releases only
when
1. the chain (the contract, not our database) says the job's usage is recorded, with the job's
   privacy loss and the hash of the parameters the consumer signed (read from its UsageRecorded
   event), and the dataset's privacy budget on chain is not overspent;
2. the parameters computed with are those the consumer signed, normalised;
3. the result ciphertext is byte for byte what the HE worker reported;
and then, on a personal dataset, every decrypted number gets Gaussian noise calibrated to the
column bounds the provider declared and the job's ρ (``dataspace.privacy.mechanisms``). Cohorts
are decided on the noisy counts: a cohort below the policy's k withholds the whole answer, and
that refusal is released in its place (it costs what an answer costs: it depends on the data).
The operation then rounds every number to its documented precision (a raw CKKS decryption
leaks information about the secret key: Li and Micciancio, 2021) and the custodian signs a
receipt an auditor can check with any EIP-191 tool, stating the mechanism, ε, δ and the 95%
error bound of each released number, never a scale measured on the data. A query answered
before is answered with that same answer: fresh noise would let repeated queries average it
away.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings

from dataspace.canonical import canonical_json
from dataspace.chain import agents, encoding
from dataspace.compute import receipts, selectors
from dataspace.compute.he.keys import load_secret_context
from dataspace.compute.he.layout import StoreLayout
from dataspace.compute.he.operations import Aggregate, EncryptedResult, OperationRejected, get_operation
from dataspace.compute.he.plaintext import rounded
from dataspace.compute.models import EncryptedStore, Job
from dataspace.errors import DomainError, ErrorCode
from dataspace.privacy import mechanisms
from dataspace.privacy import services as privacy
from dataspace.role_checks import require_role
from dataspace.roles import Role
from dataspace.vault import blobs
from dataspace.vault import services as vault
from dataspace.vault.models import DataKey

ENGINE = "he-ckks (TenSEAL)"


class CustodyRefused(DomainError):
    """The custodian will not decrypt or release this result; ``code`` says why."""


@dataclass(frozen=True)
class Withheld:
    """The custodian's refusal, released in place of an answer. It names only what the consumer
    sent (the operation and its parameters), never a cell or a category they did not name."""

    code: ErrorCode
    message: str


@dataclass(frozen=True)
class Release:
    """What the custodian let go: the rounded (and noised) answer, or its refusal to answer
    (``withheld``, ``result`` None); the receipt it signed; the two hashes the settlement pins."""

    result: dict[str, Any] | None
    result_hash: bytes
    receipt: dict[str, Any]
    attestation_hash: bytes
    withheld: Withheld | None = None


_SECRET_CACHE_SIZE = 4


@lru_cache(maxsize=_SECRET_CACHE_SIZE)
def _secret_context(secret_blob: str, data_key_id: uuid.UUID) -> Any:
    """Kept in the custodian's memory for its next jobs on the same dataset: unsealing and
    deserialising a key set costs more than a whole small job."""
    require_role(Role.CUSTODIAN, purpose="Unsealing a CKKS secret context")
    data_key = DataKey.objects.get(pk=data_key_id)
    with vault.blob_open(blob_name=secret_blob, key=vault.data_key_unwrap(data_key)) as reader:
        return load_secret_context(reader.read())


# One unsealing at a time: a release that needs the key set the process warm-up is opening waits
# for it instead of opening it a second time (a process runs one task at a time besides).
_opening = threading.Lock()


def _secret_contexts(store: EncryptedStore) -> dict[str, Any]:
    with _opening:
        return {key.level: _secret_context(key.secret_blob, key.data_key_id) for key in store.keys.all()}


def secret_contexts_warm(store: EncryptedStore) -> None:
    """Opens the store's secret contexts ahead of its next release (the process warm-up)."""
    _secret_contexts(store)


def _check_chain(job: Job) -> None:
    agent = agents.UsageAgreementsAgent()
    job_id = bytes.fromhex(job.chain_job_id[2:])
    usage = agent.usage(job_id)
    if usage.status != agents.JobStatus.RECORDED or usage.agreement_id != job.agreement.chain_agreement_id:
        raise CustodyRefused(
            f"The chain shows this job as {usage.status.name.lower()}, not recorded.",
            code=ErrorCode.USAGE_NOT_RECORDED,
        )
    if usage.privacy_loss != encoding.rho_nano(job.rho):
        raise CustodyRefused(
            "The privacy loss recorded on chain is not the one the job asked for.", code=ErrorCode.EPSILON_MISMATCH
        )
    # ISSUE-12: the dataset's chain id carries its provider, read from the chain's own agreement.
    provider = str(agent.agreement(usage.agreement_id)["provider"])
    budget = agent.dataset_privacy(job.dataset_id, provider=provider)
    if budget.used > budget.limit:
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


def withheld_for_cohort(aggregates: list[Aggregate], values: dict[str, float], minimum: int) -> Withheld | None:
    """The refusal if any released number's cohort (a count, noisy on a personal dataset) is
    below the policy's minimum."""
    for aggregate in aggregates:
        # Every cohort of a number: its contributors, and each value of a low-cardinality column
        # it multiplies.
        for name in aggregate.cohorts:
            cohort = values.get(name)
            if cohort is None or cohort < minimum:
                return Withheld(
                    ErrorCode.COHORT_TOO_SMALL,
                    f"Withheld: a number of this answer would rest on fewer than the policy's minimum of "
                    f"{minimum} rows (decided on a noisy count).",
                )
    return None


def _noised(aggregates: list[Aggregate], rho: float) -> mechanisms.NoisyAggregates:
    """Gaussian noise on every number for its bounds-derived sensitivity; counts rounded to
    integers afterwards (post-processing: no privacy cost)."""
    noisy = mechanisms.gaussian(
        {a.name: a.value for a in aggregates}, {a.name: a.l2_sensitivity for a in aggregates}, rho
    )
    values = {
        a.name: float(round(noisy.values[a.name])) if a.cohort == a.name else noisy.values[a.name] for a in aggregates
    }
    return mechanisms.NoisyAggregates(values=values, scales=noisy.scales, rho=noisy.rho)


def _answer(job: Job, layout: StoreLayout, aggregates: list[Aggregate]) -> dict[str, Any]:
    """The answer the custodian gives, before it is signed: the result (or the refusal), the
    noise added and each released number's 95% error bound."""
    operation = get_operation(job.operation)
    noisy: mechanisms.NoisyAggregates | None = None
    if job.dataset.non_personal:
        values = {a.name: a.value for a in aggregates}
        noise: dict[str, Any] = {"mechanism": "none (the dataset is declared non-personal)"}
    elif job.rho > 0:
        noisy = _noised(aggregates, job.rho)
        values = noisy.values
        noise = {"mechanism": "gaussian (OpenDP, zCDP)", "epsilon": job.epsilon, "delta": settings.PRIVACY_DELTA}
    else:  # a personal dataset never answers without noise, whatever the job says
        raise CustodyRefused(
            "The job has no privacy loss to spend on a personal dataset.", code=ErrorCode.EPSILON_INVALID
        )
    withheld = withheld_for_cohort(aggregates, values, job.agreement.offer.min_cohort)
    if withheld is not None:
        return {"result": None, "withheld": {"code": str(withheld.code), "message": withheld.message}, "noise": noise}
    result = operation.finish(job.params, layout, values)
    if noisy is not None:
        valid = operation.validate(job.params, layout)
        bounds = mechanisms.error_bounds(lambda sample: operation.answer_from(valid, sample), noisy)
        noise["error_bounds_95"] = rounded(bounds, 3)  # a bound needs no more digits than that
    return {"result": result, "withheld": None, "noise": noise}


def cacheable_answer(job: Job) -> dict[str, Any]:
    """The answer a settled (or withheld) job released, as the cache keeps it."""
    assert job.receipt is not None
    withheld = {"code": job.failure_code, "message": job.failure_message} if job.failure_code else None
    return {"result": job.result, "withheld": withheld, "noise": job.receipt["noise"]}


def release(job: Job) -> Release:
    """Checks, decrypts, noises, rounds and signs a computed job's result.

    Raises ``CustodyRefused`` when nothing may be released (the job is then failed and
    refunded); returns a ``Release`` carrying the answer or the custodian's withholding of it.
    ``job`` needs its agreement, offer and dataset loaded. Runs only in the custodian's process
    (the ``custody`` queue): any other role is refused before a key is touched."""
    require_role(Role.CUSTODIAN, purpose="Releasing a job's result")
    if job.operation == "algorithm":  # ISSUE-13: a tee job's signed result, same checks
        from dataspace.compute import tee_custody

        return tee_custody.release(job)
    _check_chain(job)
    encrypted = _read_result(job)
    store = EncryptedStore.objects.get(pk=job.dataset_id)
    layout = selectors.encrypted_store_layout(store)
    _check_params(job, layout)
    cached = privacy.cached_answer_get(dataset_id=job.dataset_id, key=job.query_key) if job.query_key else None
    if cached is not None:
        answer = {**cached.answer, "noise": {**cached.answer["noise"], "cached_from_job": str(cached.first_job_id)}}
    else:
        operation = get_operation(job.operation)
        try:  # decrypt checks the result's shape first: a mismatch is a refusal, not a retry
            aggregates = operation.decrypt(job.params, layout, encrypted, _secret_contexts(store))
        except OperationRejected as exc:
            raise CustodyRefused(exc.message, code=exc.code) from None
        answer = _answer(job, layout, aggregates)
    salt = secrets.token_bytes(32)
    released = answer["result"] if answer["withheld"] is None else {"withheld": answer["withheld"]}
    result_hash = receipts.result_commitment(released, salt)
    signed = receipts.receipt_sign(
        {
            "job_id": job.chain_job_id,
            "operation": job.operation,
            "parameters": job.request_params,
            "dataset_sha256": job.dataset.content_sha256,
            "result_sha256": "0x" + result_hash.hex(),
            "result_salt": "0x" + salt.hex(),
            "ciphertext_sha256": job.ciphertext_sha256,
            "noise": answer["noise"],
            "withheld": answer["withheld"],
            "engine": ENGINE,
            "custodian": receipts.custodian().address,
        }
    )
    withheld = answer["withheld"]
    return Release(
        result=answer["result"],
        result_hash=result_hash,
        receipt=signed,
        attestation_hash=receipts.attestation_hash(signed),
        withheld=Withheld(ErrorCode(withheld["code"]), withheld["message"]) if withheld else None,
    )
