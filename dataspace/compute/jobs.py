"""The job lifecycle after the request: one step per state, each moving the job on once.

REQUESTED -> AUTHORISED -> COMPUTED -> RELEASED -> SETTLED, or REJECTED (the chain refused the use:
nothing charged), or FAILED -> REFUNDED after authorisation. Every transition is one guarded
UPDATE (``WHERE status = <expected>``): of two workers racing, exactly one moves the job, the other
sees it moved and leaves. Every step can be repeated safely, so a redelivered task is harmless.
The computation and the release are bounded: attempts are counted on the row before the work
starts, so a job that kills its worker every time ends failed and refunded, not in a loop.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from dataspace import tasking
from dataspace.chain import agents, gateway, outbox
from dataspace.chain.models import ChainTransaction
from dataspace.compute import batches, custody, engines, key_broker, receipts, selectors, tee
from dataspace.compute.models import Job, SettlementBatch
from dataspace.errors import AttemptFailed, ErrorCode, TransientError
from dataspace.policies.services import agreement_release_reservation
from dataspace.privacy import services as privacy
from dataspace.role_checks import require_role
from dataspace.roles import Role

logger = logging.getLogger(__name__)
Status = Job.Status
MAX_COMPUTE_ATTEMPTS = 3
MAX_RELEASE_ATTEMPTS = 3

# The task that moves a job out of each unfinished state (queues in settings.CELERY_TASK_ROUTES).
STEP_TASKS: dict[Job.Status, str] = {
    Status.REQUESTED: "dataspace.compute.tasks.authorise_job",
    Status.AUTHORISED: "dataspace.compute.tasks.compute_job",
    Status.COMPUTED: "dataspace.compute.tasks.release_job",
    Status.RELEASED: "dataspace.compute.tasks.settle_job",
    Status.FAILED: "dataspace.compute.tasks.refund_job",
}
# ISSUE-13: a ``tee`` job (operation "algorithm") computes on the ``tee`` queue, in the sandbox.
TEE_COMPUTE_TASK = "dataspace.compute.tasks.compute_tee_job"
TEE_OPERATION = "algorithm"


def step_task(status: Status, job_id: uuid.UUID) -> str:
    """The task that moves the job out of ``status`` (the compute step depends on its engine)."""
    if status == Status.AUTHORISED and Job.objects.filter(pk=job_id, operation=TEE_OPERATION).exists():
        return TEE_COMPUTE_TASK
    return STEP_TASKS[status]


def transition(job_id: uuid.UUID, *, source: Status | tuple[Status, ...], target: Status, **fields: object) -> bool:
    """Moves the job if (and only if) it is still in ``source``; True when this call moved it."""
    sources = source if isinstance(source, tuple) else (source,)
    now = timezone.now()
    stamp = {f"{target.value}_at": now, "updated_at": now}
    moved = Job.objects.filter(pk=job_id, status__in=sources).update(status=target, **stamp, **fields)
    return moved == 1


def _advance(job_id: uuid.UUID, *, source: Status | tuple[Status, ...], target: Status, **fields: object) -> bool:
    """The transition, and the next step queued once it commits."""
    with transaction.atomic():
        moved = transition(job_id, source=source, target=target, **fields)
        if moved and target in STEP_TASKS:
            tasking.enqueue_on_commit(step_task(target, job_id), str(job_id))  # ISSUE-13
    return moved


def job_fail(job_id: uuid.UUID, *, code: ErrorCode, message: str) -> bool:
    """After authorisation every failure ends in a refund: never charged for nothing."""
    moved = _advance(
        job_id,
        source=(Status.AUTHORISED, Status.COMPUTED, Status.RELEASED),
        target=Status.FAILED,
        failure_code=code,
        failure_message=message[:2000],
    )
    if moved:
        logger.info("job %s failed (%s); refunding", job_id, code)
    return moved


def _end_returning_reservation(job: Job, *, source: Status, target: Status, **fields: object) -> None:
    """Ends the job uncharged (the chain refused the use, or refunded it) and gives its call back
    to the agreement and its privacy loss back to the dataset, once: nothing of the data was
    released to the consumer."""
    with transaction.atomic():
        if transition(job.id, source=source, target=target, **fields):
            agreement_release_reservation(agreement_id=job.agreement_id)
            privacy.loss_return(job_id=job.id)


def _follow_write(
    job_id: uuid.UUID,
    *,
    waiting_in: Status,
    write: str,
    on_confirmed: Callable[[Job, ChainTransaction], object],
    on_failed: Callable[[Job, ChainTransaction], object],
) -> bool:
    """Follows the job's chain ``write`` while the job waits in ``waiting_in``; True once the
    job left that state or the write has an outcome (the matching handler ran)."""
    job = Job.objects.get(pk=job_id)
    if job.status != waiting_in:
        return True
    tx_id = getattr(job, f"{write}_id")
    assert tx_id is not None
    return outbox.write_follow(
        tx_id=tx_id, on_confirmed=lambda tx: on_confirmed(job, tx), on_failed=lambda tx: on_failed(job, tx)
    )


def job_authorise(*, job_id: uuid.UUID) -> bool:
    """Follows recordUsage; True once the job left REQUESTED (authorised or rejected)."""
    return _follow_write(
        job_id,
        waiting_in=Status.REQUESTED,
        write="record_tx",
        on_confirmed=lambda job, tx: _advance(job.id, source=Status.REQUESTED, target=Status.AUTHORISED),
        on_failed=lambda job, tx: _end_returning_reservation(
            job,
            source=Status.REQUESTED,
            target=Status.REJECTED,
            failure_code=ErrorCode.CHAIN_REFUSED,
            failure_message=tx.revert_reason,
        ),
    )


def _count_attempt(job_id: uuid.UUID, *, status: Status, field: str) -> int | None:
    """Counts an attempt at the work of ``status`` before it starts; None when the job is no
    longer there (another worker moved it)."""
    if not Job.objects.filter(pk=job_id, status=status).update(**{field: F(field) + 1}):
        return None
    return int(Job.objects.values_list(field, flat=True).get(pk=job_id))


def job_compute(*, job_id: uuid.UUID) -> None:
    """Runs the job's operation over ciphertexts (public keys only) and records the result's
    ciphertext and hash. Raises ``AttemptFailed`` while attempts remain."""
    attempts = _count_attempt(job_id, status=Status.AUTHORISED, field="compute_attempts")
    if attempts is None:
        return
    if attempts > MAX_COMPUTE_ATTEMPTS:
        job_fail(job_id, code=ErrorCode.COMPUTE_FAILED, message=f"The computation failed {MAX_COMPUTE_ATTEMPTS} times.")
        return
    job = Job.objects.get(pk=job_id)
    if job.operation == TEE_OPERATION:  # ISSUE-13
        _compute_tee(job, attempts=attempts)
        return
    try:
        result = engines.HEEngine().run(job)
        blob, digest = engines.result_save(job, result)
    except Exception as exc:
        logger.exception("job %s: computation failed", job_id)
        if attempts >= MAX_COMPUTE_ATTEMPTS:
            job_fail(job_id, code=ErrorCode.COMPUTE_FAILED, message=f"The computation failed ({type(exc).__name__}).")
            return
        raise AttemptFailed(f"computation attempt {attempts} of job {job_id} failed") from exc
    _advance(job_id, source=Status.AUTHORISED, target=Status.COMPUTED, result_blob=blob, ciphertext_sha256=digest)


# ISSUE-13
def _compute_tee(job: Job, *, attempts: int) -> None:
    """Runs the job's approved algorithm in the sandbox (the custodian releasing the data key to
    it). What the algorithm did wrong is the job's fault, decided once: the job fails with the
    sandbox's fixed reason (never the algorithm's own words) and is refunded; only an error of
    the platform is retried."""
    from enclaves.sandbox import JobFailed

    job = Job.objects.select_related("agreement__offer", "dataset", "algorithm").get(pk=job.pk)
    try:
        outcome = tee.run(job)
        blob, digest, record = tee.result_save(job, outcome)
    except tee.TeeRefused as exc:
        job_fail(job.id, code=exc.code, message=exc.message)
        return
    except key_broker.KeyReleaseRefused as exc:
        job_fail(job.id, code=exc.code, message=exc.message)
        return
    except JobFailed as exc:
        code = ErrorCode.ATTESTATION_REFUSED if exc.code == "attestation_refused" else ErrorCode.TEE_JOB_FAILED
        detail = f" ({exc.refusal})" if exc.refusal else ""
        job_fail(job.id, code=code, message=f"{exc.code}{detail}: {exc.message}")
        return
    except (TransientError, OperationalError):
        raise
    except Exception as exc:
        logger.exception("job %s: tee computation failed", job.id)
        if attempts >= MAX_COMPUTE_ATTEMPTS:
            job_fail(job.id, code=ErrorCode.COMPUTE_FAILED, message=f"The computation failed ({type(exc).__name__}).")
            return
        raise AttemptFailed(f"computation attempt {attempts} of job {job.id} failed") from exc
    _advance(
        job.id,
        source=Status.AUTHORISED,
        target=Status.COMPUTED,
        result_blob=blob,
        ciphertext_sha256=digest,
        tee_run=record,
    )


def tee_jobs_fail_for_revoked(*, algorithm_id: uuid.UUID) -> int:
    """ISSUE-13: an approval revoked: the algorithm's jobs not yet computed are failed (and so
    refunded); those still REQUESTED fail at their compute step, which finds it not approved."""
    failed = 0
    for job_id in Job.objects.filter(algorithm_id=algorithm_id, status=Status.AUTHORISED).values_list("pk", flat=True):
        failed += job_fail(
            job_id, code=ErrorCode.ALGORITHM_REVOKED, message="The provider revoked the algorithm's approval."
        )
    return failed


def _settle_write(job: Job, *, result_hash: bytes, attestation_hash: bytes) -> ChainTransaction:
    """settle, or settleMetered with the sandbox's meters on a metered offer (ISSUE-13)."""
    agent = agents.UsageAgreementsAgent()
    job_id = bytes.fromhex(job.chain_job_id[2:])
    if job.agreement.offer.max_cpu_millis > 0:
        metering = (job.tee_run or {}).get("metering", {})
        return agent.settle_metered(
            key=f"job-settle:{job.id}",
            job_id=job_id,
            result_hash=result_hash,
            attestation_hash=attestation_hash,
            cpu_millis=int(metering.get("billable_cpu_ms", 0)),
            peak_memory_bytes=int(metering.get("peak_memory_bytes", 0)),
            bytes_read=int(metering.get("bytes_read", 0)),
        )
    return agent.settle(
        key=f"job-settle:{job.id}", job_id=job_id, result_hash=result_hash, attestation_hash=attestation_hash
    )


def _settle_alone(job_id: uuid.UUID) -> None:
    """Queues the released job's own settlement write (once) and the step that follows it."""
    with transaction.atomic():
        job = Job.objects.select_related("agreement__offer").get(pk=job_id)
        if job.status != Status.RELEASED or job.settle_tx_id is not None:
            return
        assert job.receipt is not None  # released: the custodian signed it
        settle_tx = _settle_write(
            job,
            result_hash=bytes.fromhex(job.result_hash[2:]),
            attestation_hash=receipts.settled_attestation(job.receipt),
        )
        Job.objects.filter(pk=job.pk, settle_tx__isnull=True).update(settle_tx=settle_tx)
        tasking.enqueue_on_commit(STEP_TASKS[Status.RELEASED], str(job.id))


def job_release(*, job_id: uuid.UUID) -> None:
    """Has the custodian release the result, records it and queues the settlement. A refusal
    fails the job; a node or database away is not the job's fault and is not counted. Only the
    custodian runs it (``release_job`` on the ``custody`` queue); another role refuses before it
    counts an attempt, so a misrouted task costs the job nothing."""
    require_role(Role.CUSTODIAN, purpose="Releasing a job's result")
    attempts = _count_attempt(job_id, status=Status.COMPUTED, field="release_attempts")
    if attempts is None:
        return
    if attempts > MAX_RELEASE_ATTEMPTS:
        job_fail(job_id, code=ErrorCode.RELEASE_FAILED, message=f"The release failed {MAX_RELEASE_ATTEMPTS} times.")
        return
    job = Job.objects.select_related("agreement", "agreement__offer", "dataset").get(pk=job_id)
    try:
        released = custody.release(job)
    except custody.CustodyRefused as exc:
        job_fail(job_id, code=exc.code, message=exc.message)
        return
    except (TransientError, OperationalError):
        with contextlib.suppress(OperationalError):
            Job.objects.filter(pk=job_id).update(release_attempts=F("release_attempts") - 1)
        raise
    except Exception as exc:
        logger.exception("job %s: release failed", job_id)
        if attempts >= MAX_RELEASE_ATTEMPTS:
            job_fail(job_id, code=ErrorCode.RELEASE_FAILED, message=f"The release failed ({type(exc).__name__}).")
            return
        raise AttemptFailed(f"release attempt {attempts} of job {job_id} failed") from exc
    withheld = released.withheld
    with transaction.atomic():
        if not transition(
            job.id,
            source=Status.COMPUTED,
            target=Status.RELEASED,
            result=released.result,
            result_hash="0x" + released.result_hash.hex(),
            receipt=released.receipt,
            failure_code=withheld.code if withheld else "",
            failure_message=withheld.message if withheld else "",
        ):
            return
        if batches.job_batchable(job):  # ISSUE-14: it waits for a batch
            batches.job_queued_for_batch()
            return
        settle_tx = _settle_write(  # ISSUE-13
            job, result_hash=released.result_hash, attestation_hash=released.attestation_hash
        )
        Job.objects.filter(pk=job.pk).update(settle_tx=settle_tx)
        tasking.enqueue_on_commit(STEP_TASKS[Status.RELEASED], str(job.id))


def _settled(job: Job, tx: ChainTransaction) -> None:
    """The use is paid and its result's commitment on chain: the consumer may read the answer (or
    the custodian's refusal), its privacy loss is spent for good, and the same query is answered
    from now on with this answer."""
    target = Status.WITHHELD if job.failure_code else Status.SETTLED
    with transaction.atomic():
        if not transition(job.id, source=Status.RELEASED, target=target):
            return
        privacy.loss_spend(job_id=job.id)
        if job.query_key and job.receipt is not None:
            privacy.cached_answer_put(
                dataset_id=job.dataset_id, key=job.query_key, answer=custody.cacheable_answer(job), job_id=job.id
            )


def job_settle(*, job_id: uuid.UUID) -> bool:
    """Follows the settlement; True once the job is settled or withheld (or failed for a refused
    settlement). ISSUE-14: a job waiting for a batch has due batches built (the sweeper's way
    back to a job whose flush was lost); a job in a batch follows its batch's write."""
    job = Job.objects.get(pk=job_id)
    if job.status != Status.RELEASED:
        return True
    if job.settle_tx_id is None:
        entry = batches.job_batch_entry(job_id)
        if entry is None and not batches.batching_enabled():
            _settle_alone(job_id)  # it waited for a batch when batching was turned off
            return job_settle(job_id=job_id)
        if entry is None:
            batches.batches_flush()
            entry = batches.job_batch_entry(job_id)
            if entry is None:
                return True  # not due yet: its flush, or the sweeper, comes back for it
        if not settlement_batch_follow(batch_id=entry.batch_id):
            return False
        job.refresh_from_db(fields=["status", "settle_tx"])
        if job.status != Status.RELEASED or job.settle_tx_id is None:
            return True
    return _follow_write(
        job_id,
        waiting_in=Status.RELEASED,
        write="settle_tx",
        on_confirmed=_settled,
        on_failed=lambda job, tx: job_fail(job.id, code=ErrorCode.SETTLE_REFUSED, message=tx.revert_reason),
    )


def settlement_batch_follow(*, batch_id: int) -> bool:
    """ISSUE-14: follows a batch's settleBatch write; True once it has an outcome and every job of
    the batch has been moved by it: all settled, or (the chain refused the batch) each queued to
    settle alone or, refunded on chain meanwhile, ended refunded."""
    batch = SettlementBatch.objects.get(pk=batch_id)
    assert batch.settle_tx_id is not None  # written with the batch
    return outbox.write_follow(
        tx_id=batch.settle_tx_id,
        on_confirmed=lambda tx: _batch_settled(batch, tx),
        on_failed=lambda tx: _batch_refused(batch, tx),
    )


def _batch_settled(batch: SettlementBatch, tx: ChainTransaction) -> None:
    if batch.chain_batch_id is None:
        event = agents.receipt_event(tx, contract="UsageAgreements", event="BatchSettled")
        batches.batch_confirmed(batch, chain_batch_id=int(event["batchId"]))
    for job in batches.batch_jobs(batch, status=Status.RELEASED):
        _settled(job, tx)


def _batch_refused(batch: SettlementBatch, tx: ChainTransaction) -> None:
    """The chain settled none of the batch's jobs (settleBatch is all or nothing). Each job ends
    in one outcome: settled alone if the chain still has it recorded, refunded if the chain
    refunded it meanwhile (its call and privacy loss are back there already)."""
    batches.batch_failed(batch)
    agent = agents.UsageAgreementsAgent()
    for job in batches.batch_jobs(batch, status=Status.RELEASED):
        if job.settle_tx_id is not None:
            continue
        on_chain = agent.usage(bytes.fromhex(job.chain_job_id[2:])).status
        if on_chain == agents.JobStatus.REFUNDED:
            _end_returning_reservation(
                job,
                source=Status.RELEASED,
                target=Status.REFUNDED,
                failure_code=ErrorCode.SETTLE_REFUSED,
                failure_message=f"The chain refunded this job before its batch settled ({tx.revert_reason})."[:2000],
            )
        else:
            logger.info("job %s: its batch %s was refused (%s); settling it alone", job.id, batch.pk, tx.revert_reason)
            _settle_alone(job.id)


def _refund_reverted(job: Job, tx: ChainTransaction) -> None:
    # A refund that reverts (e.g. the contract paused) stays FAILED and is retried.
    raise gateway.ChainUnavailable(f"The refund of job {job.id} reverted: {tx.revert_reason}")


def job_refund(*, job_id: uuid.UUID) -> bool:
    """Sends and follows the refund of a failed job; True once refunded."""
    job = Job.objects.get(pk=job_id)
    if job.status != Status.FAILED:
        return True
    if job.refund_tx_id is None:
        tx = agents.UsageAgreementsAgent().refund(
            key=f"job-refund:{job.id}", job_id=bytes.fromhex(job.chain_job_id[2:]), reason=job.failure_code or "failed"
        )
        Job.objects.filter(pk=job.pk, refund_tx__isnull=True).update(refund_tx=tx)
    return _follow_write(
        job_id,
        waiting_in=Status.FAILED,
        write="refund_tx",
        on_confirmed=lambda job, tx: _end_returning_reservation(job, source=Status.FAILED, target=Status.REFUNDED),
        on_failed=_refund_reverted,
    )


def jobs_tee_unclaimed_fail(*, older_than: timedelta) -> int:
    """Fails (and so refunds) authorised tee jobs no worker has started for ``older_than``: no
    worker able to sandbox serves the ``tee`` queue. Re-sending them would wait for ever."""
    cutoff = timezone.now() - older_than
    unclaimed = Job.objects.filter(
        status=Status.AUTHORISED, operation=TEE_OPERATION, compute_attempts=0, authorised_at__lt=cutoff
    ).values_list("pk", flat=True)[:500]
    message = (
        f"No worker able to run the sandbox took this job within {int(older_than.total_seconds())} s; "
        "the call is refunded."
    )
    return sum(job_fail(pk, code=ErrorCode.TEE_UNAVAILABLE, message=message) for pk in list(unclaimed))


def jobs_stalled(*, older_than: timedelta) -> list[tuple[str, uuid.UUID]]:
    """(task, job id) of every unfinished job nobody moved for ``older_than``."""
    cutoff = timezone.now() - older_than
    return [
        (step_task(status, pk), pk)
        for status, pk in selectors.jobs_unmoved_since(cutoff=cutoff, statuses=list(STEP_TASKS))
    ]


def sweep_interval() -> timedelta:
    return timedelta(seconds=settings.JOB_SWEEP_AFTER)
