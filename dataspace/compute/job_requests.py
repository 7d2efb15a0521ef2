"""Asking for a job: the request checked against the policy, a call reserved, the use signed.

Everything that can refuse a request does so here, before anything is charged or sent on chain:
the agreement, the operation's parameters, the cohort, the policy's terms (evaluated under the
agreement's row lock, so concurrent requests never over-reserve) and the usage signature. A
request that passes becomes a REQUESTED job whose ``recordUsage`` write is in the outbox, in
the same transaction as its reservation.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from dataspace import tasking
from dataspace.accounts.models import User, Wallet
from dataspace.accounts.selectors import wallet_get
from dataspace.accounts.services import wallet_private_key
from dataspace.canonical import canonical_json
from dataspace.chain import agents, eip712, gateway
from dataspace.chain.encoding import epsilon_micro, job_chain_id, label_hash
from dataspace.compute import jobs, selectors
from dataspace.compute.he.layout import StoreLayout
from dataspace.compute.he.operations import OperationRejected, get_operation
from dataspace.compute.models import Job
from dataspace.errors import DomainError, ErrorCode
from dataspace.policies import odrl
from dataspace.policies import selectors as policy_selectors
from dataspace.policies import services as policy_services
from dataspace.policies.models import Agreement

SIGNATURE_TTL = timedelta(hours=1)


@dataclass(frozen=True)
class JobRequest:
    agreement_id: uuid.UUID
    operation: str
    params: dict[str, Any]
    purpose: str
    epsilon: float
    idempotency_key: str
    # A consumer with their own wallet signs the Usage message and sends these three; a custodial
    # consumer may leave them out and let the platform sign with their key.
    nonce: int | None = None
    deadline: int | None = None
    signature: str | None = None

    def digest(self) -> str:
        body = [str(self.agreement_id), self.operation, self.params, self.purpose, self.epsilon]
        return hashlib.sha256(canonical_json(body)).hexdigest()


def new_idempotency_key() -> str:
    return secrets.token_hex(16)


def job_request(*, consumer: User, request: JobRequest) -> tuple[Job, bool]:
    """Checks a request against the policy, reserves a call (and budget) and queues recordUsage.
    Returns (job, created); a retry with the same idempotency key returns the first job."""
    existing = Job.objects.filter(consumer=consumer, idempotency_key=request.idempotency_key).first()
    if existing is not None:
        return _same_request(existing, request), False
    agreement = policy_selectors.agreement_get_consumed(consumer=consumer, agreement_id=request.agreement_id)
    policy_services.agreement_check_active(agreement=agreement)
    store = selectors.encrypted_store_get_ready(dataset=agreement.offer.dataset)
    layout = StoreLayout.from_json(store.layout)
    try:
        params = get_operation(request.operation).validate(request.params, layout)
    except OperationRejected as exc:
        raise DomainError(str(exc), code=ErrorCode.INVALID_OPERATION, details={"reason": str(exc.code)}) from None
    _check_cohorts(params, store.cohort_counts, agreement.offer.min_cohort)
    wallet = wallet_get(user=consumer)
    if wallet is None:
        raise DomainError("The account has no wallet to sign the usage with.", code=ErrorCode.WALLET_REQUIRED)
    usage = odrl.UsageRequest(request.purpose, request.operation, request.epsilon, timezone.now())
    try:
        with transaction.atomic():
            locked = policy_services.agreement_reserve(agreement=agreement, usage=usage)
            job = _create(consumer, wallet, locked, request, params)
            tasking.enqueue_on_commit(jobs.STEP_TASKS[Job.Status.REQUESTED], str(job.id))
    except IntegrityError:
        # The same idempotency key raced us, or the nonce is taken: a replayed signature.
        existing = Job.objects.filter(consumer=consumer, idempotency_key=request.idempotency_key).first()
        if existing is not None:
            return _same_request(existing, request), False
        raise DomainError(
            "This usage signature's nonce was already used on the agreement.", code=ErrorCode.SIGNATURE_REPLAYED
        ) from None
    return job, True


def _same_request(job: Job, request: JobRequest) -> Job:
    if job.request_digest != request.digest():
        raise DomainError(
            "This idempotency key was already used for a different request.", code=ErrorCode.IDEMPOTENCY_KEY_REUSED
        )
    return job


def _check_cohorts(params: dict[str, Any], counts: dict[str, Any], minimum: int) -> None:
    """Refuses up front what the custodian would refuse later, from the exact counts taken at
    ingest: a filter or a group whose cohort is below the policy's minimum."""
    small: list[str] = []
    where = params.get("where")
    if where and "equals" in where:
        if counts.get("categories", {}).get(where["column"], {}).get(where["equals"], 0) < minimum:
            small.append(f"{where['column']} = the requested category")
    elif where and "bucket_from" in where:
        row = counts.get("buckets", {}).get(where["column"], [])
        # ISSUE-11: a range may now reach the cells below/above the edges; the custodian counts those.
        ends = (where["bucket_from"], where["bucket_to"])
        if all(isinstance(end, int) for end in ends) and sum(row[ends[0] : ends[1] + 1]) < minimum:
            small.append(f"{where['column']} buckets {where['bucket_from']}..{where['bucket_to']}")
    if params.get("by"):
        groups = counts.get("categories", {}).get(params["by"], {})
        if any(n < minimum for n in groups.values()):
            small.append(f"a group of {params['by']}")
    if small:
        raise DomainError(
            f"The cohort behind {', '.join(small)} is below the policy's minimum of {minimum} rows.",
            code=ErrorCode.COHORT_TOO_SMALL,
            details={"min_cohort": minimum},
        )


def _usage_nonce(wallet: Wallet, agreement: Agreement, request: JobRequest) -> tuple[int, int]:
    """(nonce, deadline) of the usage signature: the platform's next for a custodial consumer,
    the consumer's own for a signed request."""
    if request.signature is None:
        if wallet.kind != Wallet.Kind.CUSTODIAL:
            raise DomainError(
                "Your wallet is your own: sign the Usage message and send nonce, deadline and signature.",
                code=ErrorCode.SIGNATURE_INVALID,
            )
        deadline = int((timezone.now() + SIGNATURE_TTL).timestamp())
        return policy_services.agreement_take_nonce(agreement=agreement), deadline
    if request.nonce is None or request.deadline is None or not 0 < request.nonce < 2**128:
        raise DomainError("A signed request needs nonce (1..2^128-1) and deadline.", code=ErrorCode.VALIDATION_FAILED)
    if request.deadline <= timezone.now().timestamp():
        raise DomainError("The usage signature's deadline has passed.", code=ErrorCode.SIGNATURE_EXPIRED)
    return request.nonce, request.deadline


def _usage_signature(wallet: Wallet, request: JobRequest, usage: eip712.Usage) -> bytes:
    """The platform's signature for a custodial consumer, or the consumer's own, checked."""
    if request.signature is None:
        return eip712.sign_usage(key=wallet_private_key(wallet=wallet), usage=usage)
    try:
        signature = bytes.fromhex(request.signature.removeprefix("0x"))
        signer = eip712.recover_usage_signer(signature=signature, usage=usage)
    except Exception:
        raise DomainError("The usage signature is malformed.", code=ErrorCode.SIGNATURE_INVALID) from None
    if signer.lower() != wallet.address.lower():
        raise DomainError(
            "The usage signature was not made by your wallet for this request.", code=ErrorCode.SIGNATURE_INVALID
        )
    return signature


def _create(consumer: User, wallet: Wallet, agreement: Agreement, request: JobRequest, params: dict[str, Any]) -> Job:
    assert agreement.chain_agreement_id is not None
    agent = agents.UsageAgreementsAgent()
    epsilon = epsilon_micro(request.epsilon)
    nonce, deadline = _usage_nonce(wallet, agreement, request)
    job_id = job_chain_id(agreement_id=agreement.chain_agreement_id, nonce=nonce)
    usage = eip712.Usage(
        chain_id=gateway.chain_id(),
        contract=agent.address(),
        agreement_id=agreement.chain_agreement_id,
        job_id=job_id,
        purpose=label_hash(request.purpose),
        operation=label_hash(request.operation),
        epsilon=epsilon,
        nonce=nonce,
        deadline=deadline,
    )
    signature = _usage_signature(wallet, request, usage)
    job = Job.objects.create(
        consumer=consumer,
        agreement=agreement,
        dataset=agreement.offer.dataset,
        idempotency_key=request.idempotency_key,
        request_digest=request.digest(),
        operation=request.operation,
        params=params,
        purpose=request.purpose,
        epsilon=request.epsilon,
        nonce=nonce,
        chain_job_id="0x" + job_id.hex(),
        deadline=deadline,
        signature="0x" + signature.hex(),
        signed_by_platform=request.signature is None,
    )
    job.record_tx = agent.record_usage(
        key=f"job-record:{job.id}",
        agreement_id=agreement.chain_agreement_id,
        job_id=job_id,
        purpose=request.purpose,
        operation=request.operation,
        epsilon=epsilon,
        deadline=deadline,
        signature=signature,
    )
    job.save(update_fields=["record_tx"])
    return job
