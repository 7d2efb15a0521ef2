"""The key custodian: the only code path that unwraps a CKKS secret key.

It releases a job's result only when
1. the chain (the contract, not our database) says the job's usage is recorded;
2. the result ciphertext is byte for byte what the HE worker reported;
3. every released number's cohort, counted under encryption, is at least the policy's minimum;
4. the epsilon recorded on chain fits the agreement's privacy budget on chain;
and then it adds the policy's Laplace noise (OpenDP), lets the operation round every number to
its documented precision (a raw CKKS decryption leaks information about the secret key: Li and
Micciancio, 2021), and signs a receipt an auditor can check with any EIP-191 tool. The chain gets
a salted commitment to the result, never a plain hash of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
import uuid
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from dataspace.chain import agents
from dataspace.compute import jobs
from dataspace.compute.he.keys import load_secret_context
from dataspace.compute.he.layout import StoreLayout
from dataspace.compute.he.operations import Aggregate, EncryptedResult, get_operation
from dataspace.compute.models import EncryptedStore, Job
from dataspace.errors import DomainError, ErrorCode
from dataspace.policies.services import epsilon_micro
from dataspace.vault import blobs
from dataspace.vault import services as vault
from dataspace.vault.models import DataKey

logger = logging.getLogger(__name__)
Status = Job.Status


class CustodyRefused(DomainError):
    """The custodian will not decrypt or release this result; ``details["reason"]`` says why."""


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def result_commitment(result: Any, salt: bytes) -> bytes:
    """The hash the chain records for a result: sha256(salt || canonical JSON). Salted because the
    chain is public and a released result has little entropy (a count, or a mean rounded to 6
    significant digits, is found from a plain hash by trying every candidate); the salt travels
    only in the receipt, to the job's consumer, who can show it to an auditor."""
    return hashlib.sha256(salt + canonical(result)).digest()


@cache
def _custodian_account(spec: str) -> LocalAccount:
    if spec:
        account: LocalAccount = Account.from_key(spec)
        return account
    # Development default: a key file created once, readable only by this user.
    path = settings.VAR_DIR / "custodian.key"
    with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(Account.create().key.hex())
    account = Account.from_key(wait_for_content(path))
    return account


def wait_for_content(path: Path) -> str:
    for _ in range(100):
        if text := path.read_text().strip():
            return text
        time.sleep(0.01)  # created by another process a moment ago, not yet written
    raise RuntimeError(f"{path} is empty")


def custodian() -> LocalAccount:
    return _custodian_account(settings.CUSTODIAN_KEY)


def _refuse(reason: str, message: str) -> CustodyRefused:
    return CustodyRefused(message, code=ErrorCode.CONFLICT, details={"reason": reason})


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


def _check_chain(job: Job) -> agents.OnChainUsage:
    agent = agents.UsageAgreementsAgent()
    usage = agent.usage(bytes.fromhex(job.chain_job_id[2:]))
    if usage.status != agents.JobStatus.RECORDED or usage.agreement_id != job.agreement.chain_agreement_id:
        raise _refuse("usage_not_recorded", f"The chain shows this job as {usage.status.name.lower()}, not recorded.")
    if usage.epsilon != epsilon_micro(job.epsilon):
        raise _refuse("epsilon_mismatch", "The epsilon recorded on chain is not the one the job asked for.")
    assert job.agreement.chain_agreement_id is not None
    on_chain = agent.agreement(job.agreement.chain_agreement_id)
    if on_chain["budget_used"] > on_chain["privacy_budget"] and on_chain["privacy_budget"] > 0:
        raise _refuse("budget_exhausted", "The agreement's privacy budget on chain is spent.")
    return usage


def _read_result(job: Job) -> EncryptedResult:
    with blobs.open_for_read(job.result_blob) as source:
        data = source.read()
    if hashlib.sha256(data).hexdigest() != job.ciphertext_sha256:
        raise _refuse("result_tampered", "The result ciphertext is not the one the HE worker reported.")
    return EncryptedResult.from_bytes(data)


def _check_cohorts(aggregates: list[Aggregate], minimum: int) -> None:
    values = {a.name: a.value for a in aggregates}
    for aggregate in aggregates:
        cohort = values.get(aggregate.cohort)
        if cohort is None or round(cohort) < minimum:
            raise CustodyRefused(
                f"The cohort behind {aggregate.name!r} is below the policy's minimum of {minimum} rows.",
                code=ErrorCode.COHORT_TOO_SMALL,
                details={"reason": "cohort_too_small"},
            )


def add_noise(aggregates: list[Aggregate], epsilon: float) -> tuple[dict[str, float], dict[str, Any]]:
    """Laplace noise on every aggregate, the job's epsilon split evenly among them (basic
    composition): aggregate i gets scale sensitivity_i * m / epsilon."""
    if epsilon <= 0:
        return {a.name: a.value for a in aggregates}, {"mechanism": "none"}
    import opendp.prelude as dp

    dp.enable_features("contrib")
    share = len(aggregates) / epsilon
    noisy = {}
    scales = {}
    for aggregate in aggregates:
        scale = max(aggregate.sensitivity, 1e-12) * share
        measurement = dp.m.make_laplace(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=scale)
        noisy[aggregate.name] = float(measurement(float(aggregate.value)))
        scales[aggregate.name] = scale
    return noisy, {"mechanism": "laplace (OpenDP)", "epsilon": epsilon, "scales": scales}


def release(job_id: uuid.UUID) -> bool:
    """Checks, decrypts, noises, rounds, signs and queues the settlement. Returns False when the
    job was refused (it is then failed and refunded)."""
    job = Job.objects.select_related("agreement", "agreement__offer", "dataset").get(pk=job_id)
    if job.status != Status.COMPUTED:
        return True
    try:
        _check_chain(job)
        encrypted = _read_result(job)
        store = EncryptedStore.objects.get(pk=job.dataset_id)
        layout = StoreLayout.from_json(store.layout)
        operation = get_operation(job.operation)
        aggregates = operation.decrypt(job.params, layout, encrypted, _secret_contexts(store))
        _check_cohorts(aggregates, job.agreement.offer.min_cohort)
        noisy, noise = add_noise(aggregates, job.epsilon)
        result = operation.finish(job.params, layout, noisy)
    except CustodyRefused as exc:
        jobs.fail(job.id, code=str(exc.details.get("reason", exc.code)), message=exc.message)
        return False
    salt = secrets.token_bytes(32)
    result_hash = result_commitment(result, salt)
    receipt: dict[str, Any] = {
        "job_id": job.chain_job_id,
        "operation": job.operation,
        "parameters": job.params,
        "dataset_sha256": job.dataset.content_sha256,
        "result_sha256": "0x" + result_hash.hex(),
        "result_salt": "0x" + salt.hex(),
        "ciphertext_sha256": job.ciphertext_sha256,
        "noise": noise,
        "engine": "he-ckks (TenSEAL)",
        "custodian": custodian().address,
    }
    signature = custodian().sign_message(encode_defunct(canonical(receipt))).signature
    signed = {**receipt, "signature": "0x" + bytes(signature).hex()}
    attestation_hash = hashlib.sha256(canonical(signed)).digest()
    with transaction.atomic():
        moved = jobs.transition(
            job.id,
            source=Status.COMPUTED,
            target=Status.RELEASED,
            result=result,
            result_hash="0x" + result_hash.hex(),
            receipt=signed,
        )
        if not moved:
            return True
        settle_tx = agents.UsageAgreementsAgent().settle(
            key=f"job-settle:{job.id}",
            job_id=bytes.fromhex(job.chain_job_id[2:]),
            result_hash=result_hash,
            attestation_hash=attestation_hash,
        )
        Job.objects.filter(pk=job.pk).update(settle_tx=settle_tx)
        transaction.on_commit(lambda: jobs.dispatch("settle", job.id))
    return True


def receipt_signer(receipt: dict[str, Any]) -> str:
    """Who signed a receipt (for auditors and tests)."""
    body = {k: v for k, v in receipt.items() if k != "signature"}
    return str(Account.recover_message(encode_defunct(canonical(body)), signature=receipt["signature"]))
