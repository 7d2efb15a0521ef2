"""The job lifecycle: a request checked against the policy and reserved, then moved state by state.

REQUESTED -> AUTHORISED -> COMPUTED -> RELEASED -> SETTLED, or REJECTED (the chain refused the use:
nothing charged), or FAILED -> REFUNDED after authorisation. Every transition is one guarded
UPDATE (``WHERE status = <expected>``): of two workers racing, exactly one moves the job, the other
sees it moved and leaves. Every step can be repeated safely, so a redelivered task is harmless.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from dataspace.accounts.models import User, Wallet
from dataspace.accounts.services import wallet_private_key
from dataspace.chain import agents, eip712, gateway, outbox
from dataspace.chain.models import ChainTransaction
from dataspace.compute.he.layout import StoreLayout
from dataspace.compute.he.operations import OperationRejected, get_operation
from dataspace.compute.models import Job
from dataspace.compute.stores import store_for_jobs
from dataspace.errors import DomainError, ErrorCode
from dataspace.policies import odrl
from dataspace.policies.models import Agreement
from dataspace.policies.services import epsilon_micro

logger = logging.getLogger(__name__)
Status = Job.Status
Tx = ChainTransaction.Status
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
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def job_request(*, consumer: User, request: JobRequest) -> tuple[Job, bool]:
    """Checks a request against the policy, reserves a call (and budget) and queues recordUsage.
    Returns (job, created); a retry with the same idempotency key returns the first job."""
    existing = Job.objects.filter(consumer=consumer, idempotency_key=request.idempotency_key).first()
    if existing is not None:
        return _same_request(existing, request), False
    agreement = (
        Agreement.objects.select_related("offer", "offer__dataset")
        .filter(pk=request.agreement_id, consumer=consumer)
        .first()
    )
    if agreement is None:
        raise DomainError("No agreement of yours has this id.", code=ErrorCode.NOT_FOUND)
    if agreement.status != Agreement.Status.ACTIVE or agreement.chain_agreement_id is None:
        raise DomainError(f"The agreement is {agreement.status}, not active.", code=ErrorCode.AGREEMENT_NOT_ACTIVE)
    dataset = agreement.offer.dataset
    store = store_for_jobs(dataset)
    layout = StoreLayout.from_json(store.layout)
    try:
        params = get_operation(request.operation).validate(request.params, layout)
    except OperationRejected as exc:
        raise DomainError(str(exc), code=ErrorCode.INVALID_OPERATION, details={"reason": exc.code}) from None
    _check_cohorts(params, store.cohort_counts, agreement.offer.min_cohort)
    wallet = Wallet.objects.filter(user=consumer).first()
    if wallet is None:
        raise DomainError("The account has no wallet to sign the usage with.", code=ErrorCode.WALLET_REQUIRED)
    try:
        with transaction.atomic():
            locked = Agreement.objects.select_for_update().get(pk=agreement.pk)
            assert locked.expires_at is not None
            odrl.evaluate(
                agreement.offer.policy,
                odrl.AgreementState(locked.calls, locked.calls_reserved, locked.budget_reserved, locked.expires_at),
                odrl.UsageRequest(request.purpose, request.operation, request.epsilon, timezone.now()),
            )
            job = _create(consumer, wallet, locked, request, params)
            Agreement.objects.filter(pk=locked.pk).update(
                calls_reserved=F("calls_reserved") + 1, budget_reserved=F("budget_reserved") + request.epsilon
            )
            transaction.on_commit(lambda: dispatch("authorise", job.id))
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
        if sum(row[where["bucket_from"] : where["bucket_to"] + 1]) < minimum:
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


def _create(consumer: User, wallet: Wallet, agreement: Agreement, request: JobRequest, params: dict[str, Any]) -> Job:
    assert agreement.chain_agreement_id is not None
    agent = agents.UsageAgreementsAgent()
    epsilon = epsilon_micro(request.epsilon)
    if request.signature is None:
        if wallet.kind != Wallet.Kind.CUSTODIAL:
            raise DomainError(
                "Your wallet is your own: sign the Usage message and send nonce, deadline and signature.",
                code=ErrorCode.SIGNATURE_INVALID,
            )
        nonce = agreement.next_nonce
        Agreement.objects.filter(pk=agreement.pk).update(next_nonce=F("next_nonce") + 1)
        deadline = int((timezone.now() + SIGNATURE_TTL).timestamp())
    else:
        if request.nonce is None or request.deadline is None or not 0 < request.nonce < 2**128:
            raise DomainError(
                "A signed request needs nonce (1..2^128-1) and deadline.", code=ErrorCode.VALIDATION_FAILED
            )
        nonce, deadline = request.nonce, request.deadline
        if deadline <= timezone.now().timestamp():
            raise DomainError("The usage signature's deadline has passed.", code=ErrorCode.SIGNATURE_EXPIRED)
    job_id = agents.job_chain_id(agreement_id=agreement.chain_agreement_id, nonce=nonce)
    fields: dict[str, Any] = {
        "chain_id": gateway.chain_id(),
        "contract": agent.address(),
        "agreement_id": agreement.chain_agreement_id,
        "job_id": job_id,
        "purpose": agents.label_hash(request.purpose),
        "operation": agents.label_hash(request.operation),
        "epsilon": epsilon,
        "nonce": nonce,
        "deadline": deadline,
    }
    if request.signature is None:
        signature = eip712.sign_usage(key=wallet_private_key(wallet=wallet), **fields)
    else:
        try:
            signature = bytes.fromhex(request.signature.removeprefix("0x"))
            signer = eip712.recover_usage_signer(signature=signature, **fields)
        except Exception:
            raise DomainError("The usage signature is malformed.", code=ErrorCode.SIGNATURE_INVALID) from None
        if signer.lower() != wallet.address.lower():
            raise DomainError(
                "The usage signature was not made by your wallet for this request.", code=ErrorCode.SIGNATURE_INVALID
            )
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


def new_idempotency_key() -> str:
    return secrets.token_hex(16)


# Transitions


def transition(job_id: uuid.UUID, *, source: Status | tuple[Status, ...], target: Status, **fields: Any) -> bool:
    """Moves the job if (and only if) it is still in ``source``; True when this call moved it."""
    sources = source if isinstance(source, tuple) else (source,)
    now = timezone.now()
    stamp = {f"{target.value}_at": now, "updated_at": now}
    moved = Job.objects.filter(pk=job_id, status__in=sources).update(status=target, **stamp, **fields)
    return moved == 1


def _release_reservation(job: Job) -> None:
    Agreement.objects.filter(pk=job.agreement_id).update(
        calls_reserved=F("calls_reserved") - 1, budget_reserved=F("budget_reserved") - job.epsilon
    )


def authorise_progress(job_id: uuid.UUID) -> bool:
    """Drives recordUsage; True once the job left REQUESTED (authorised or rejected)."""
    job = Job.objects.get(pk=job_id)
    if job.status != Status.REQUESTED:
        return True
    assert job.record_tx is not None
    tx = outbox.write_progress(tx_id=job.record_tx.pk)
    if tx.status == Tx.FAILED:
        with transaction.atomic():
            if transition(
                job.id,
                source=Status.REQUESTED,
                target=Status.REJECTED,
                failure_code="chain_refused",
                failure_message=tx.revert_reason,
            ):
                _release_reservation(job)
        return True
    if tx.status != Tx.CONFIRMED:
        return False
    if transition(job.id, source=Status.REQUESTED, target=Status.AUTHORISED):
        transaction.on_commit(lambda: dispatch("compute", job.id))
    return True


def fail(job_id: uuid.UUID, *, code: str, message: str) -> bool:
    """After authorisation every failure ends in a refund: never charged for nothing."""
    moved = transition(
        job_id,
        source=(Status.AUTHORISED, Status.COMPUTED, Status.RELEASED),
        target=Status.FAILED,
        failure_code=code,
        failure_message=message[:2000],
    )
    if moved:
        logger.info("job %s failed (%s); refunding", job_id, code)
        transaction.on_commit(lambda: dispatch("refund", job_id))
    return moved


def refund_progress(job_id: uuid.UUID) -> bool:
    job = Job.objects.get(pk=job_id)
    if job.status != Status.FAILED:
        return True
    if job.refund_tx is None:
        tx = agents.UsageAgreementsAgent().refund(
            key=f"job-refund:{job.id}", job_id=bytes.fromhex(job.chain_job_id[2:]), reason=job.failure_code or "failed"
        )
        Job.objects.filter(pk=job.pk, refund_tx__isnull=True).update(refund_tx=tx)
        job.refresh_from_db()
    assert job.refund_tx is not None
    tx = outbox.write_progress(tx_id=job.refund_tx.pk)
    if tx.status == Tx.FAILED:
        # A refund that reverts (e.g. the contract paused) stays FAILED and is retried by the sweeper.
        raise gateway.ChainUnavailable(f"The refund of job {job.id} reverted: {tx.revert_reason}")
    if tx.status != Tx.CONFIRMED:
        return False
    with transaction.atomic():
        if transition(job.id, source=Status.FAILED, target=Status.REFUNDED):
            _release_reservation(job)
    return True


def settle_progress(job_id: uuid.UUID) -> bool:
    job = Job.objects.get(pk=job_id)
    if job.status != Status.RELEASED:
        return True
    assert job.settle_tx is not None
    tx = outbox.write_progress(tx_id=job.settle_tx.pk)
    if tx.status == Tx.FAILED:
        fail(job.id, code="settle_refused", message=tx.revert_reason)
        return True
    if tx.status != Tx.CONFIRMED:
        return False
    transition(job.id, source=Status.RELEASED, target=Status.SETTLED)
    return True


def dispatch(step: str, job_id: uuid.UUID) -> None:
    from dataspace.compute import tasks

    task = {
        "authorise": tasks.authorise_job,
        "compute": tasks.compute_job,
        "release": tasks.release_job,
        "settle": tasks.settle_job,
        "refund": tasks.refund_job,
    }[step]
    try:
        task.delay(str(job_id))
    except Exception as exc:  # broker away: the sweeper moves it on later
        logger.warning("could not queue %s of job %s (%s)", step, job_id, type(exc).__name__)


STEP_OF = {
    Status.REQUESTED: "authorise",
    Status.AUTHORISED: "compute",
    Status.COMPUTED: "release",
    Status.RELEASED: "settle",
    Status.FAILED: "refund",
}


def stalled_jobs(*, older_than: timedelta) -> list[tuple[str, uuid.UUID]]:
    """Unfinished jobs nobody moved for a while (a lost message, a worker that died)."""
    cutoff = timezone.now() - older_than
    rows = Job.objects.filter(status__in=list(STEP_OF), updated_at__lt=cutoff).values_list("status", "pk")[:500]
    return [(STEP_OF[Status(status)], pk) for status, pk in rows]


def sweep_interval() -> timedelta:
    return timedelta(seconds=settings.JOB_SWEEP_AFTER)
