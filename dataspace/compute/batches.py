"""ISSUE-14: released jobs settled together, by one ``settleBatch(root, jobIds)`` write.

With ``SETTLE_BATCH_SIZE`` above 1, a released job of an unmetered offer does not queue its own
``settle``: it waits (RELEASED, no settlement write, no batch) until a batch takes it. A batch is
built when ``SETTLE_BATCH_SIZE`` jobs wait, or when the oldest has waited
``SETTLE_BATCH_WAIT_SECONDS`` (a flush task queued with that countdown at each release; the job
sweeper re-sends the settle step of a job waiting far longer, which flushes too).

Invariants kept here:
- no job is in two batches: a batch takes its jobs under row locks skipping rows another builder
  holds (PostgreSQL), after a first write that takes SQLite's single write lock, and each job's
  entry is unique (a database constraint);
- a batch, its entries and its outbox write (``batch-settle:<batch id>``) commit together, so a
  crash leaves either nothing (the jobs still wait) or a batch the outbox carries on;
- the root and proofs are computed from what the jobs' receipts pinned (the result commitment and
  the attestation hash), as the contract's ``receiptLeaf`` computes them (``chain.merkle``).

What a batch's outcome does to its jobs (settled, or each settled alone / refunded) is decided by
``jobs``, which follows the batch's write.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from dataspace import tasking
from dataspace.chain import agents, merkle
from dataspace.compute import receipts
from dataspace.compute.models import Job, SettlementBatch, SettlementBatchEntry

logger = logging.getLogger(__name__)
FLUSH_TASK = "dataspace.compute.tasks.flush_settlement_batches"
FOLLOW_TASK = "dataspace.compute.tasks.follow_settlement_batch"


def batching_enabled() -> bool:
    return int(settings.SETTLE_BATCH_SIZE) > 1


def job_batchable(job: Job) -> bool:
    """Whether a released job waits for a batch: batching is on and its offer is not metered
    (a metered job's charge depends on what it used: it settles alone, with settleMetered)."""
    return batching_enabled() and job.agreement.offer.max_cpu_millis == 0


def jobs_waiting() -> QuerySet[Job]:
    """Released jobs that wait for a batch: no settlement write of their own, in no batch."""
    return Job.objects.filter(
        status=Job.Status.RELEASED,
        settle_tx__isnull=True,
        batch_entry__isnull=True,
        agreement__offer__max_cpu_millis=0,
    )


def job_queued_for_batch() -> None:
    """Called in the transaction that releases a batchable job: a flush when the job's wait is
    over, and one at once when a full batch is waiting."""
    tasking.enqueue_on_commit(FLUSH_TASK, countdown=float(settings.SETTLE_BATCH_WAIT_SECONDS))
    if jobs_waiting().count() >= settings.SETTLE_BATCH_SIZE:
        tasking.enqueue_on_commit(FLUSH_TASK)


def batches_flush(*, now: datetime | None = None) -> list[int]:
    """Builds every batch that is due now: full ones, then a partial one whose oldest job has
    waited ``SETTLE_BATCH_WAIT_SECONDS``. Returns the new batches' ids."""
    built: list[int] = []
    while (batch_id := _batch_build(now=now or timezone.now())) is not None:
        built.append(batch_id)
    return built


def _leaf(job: Job) -> bytes:
    assert job.receipt is not None  # a released job carries its signed receipt
    return merkle.receipt_leaf(
        bytes.fromhex(job.chain_job_id[2:]),
        bytes.fromhex(job.result_hash[2:]),
        receipts.settled_attestation(job.receipt),
    )


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _batch_build(*, now: datetime) -> int | None:
    size = int(settings.SETTLE_BATCH_SIZE)
    due_before = now - timedelta(seconds=float(settings.SETTLE_BATCH_WAIT_SECONDS))
    try:
        with transaction.atomic():
            # The batch row first: on SQLite this write takes the database's write lock before
            # the jobs are read (SELECT ... FOR UPDATE is ignored there), so two builders run
            # one after the other and the second sees the first one's entries.
            batch = SettlementBatch.objects.create(root="", size=0)
            waiting = jobs_waiting().select_for_update(skip_locked=True, of=("self",))
            candidates = list(waiting.order_by("released_at", "pk")[:size])
            due = candidates and (len(candidates) >= size or (candidates[0].released_at or now) <= due_before)
            if not due:
                transaction.set_rollback(True)
                return None
            # By agreement and nonce: the contract writes each run of one agreement's jobs once.
            chosen = sorted(candidates, key=lambda job: int(job.chain_job_id, 16))
            leaves = [_leaf(job) for job in chosen]
            root = merkle.merkle_root(leaves)
            proofs = merkle.merkle_proofs(leaves)
            SettlementBatchEntry.objects.bulk_create(
                SettlementBatchEntry(
                    batch=batch, job=job, position=i, leaf=_hex(leaf), proof=[_hex(step) for step in proof]
                )
                for i, (job, leaf, proof) in enumerate(zip(chosen, leaves, proofs, strict=True))
            )
            tx = agents.UsageAgreementsAgent().settle_batch(
                key=f"batch-settle:{batch.pk}",
                root=root,
                job_ids=[bytes.fromhex(job.chain_job_id[2:]) for job in chosen],
            )
            batch.root, batch.size, batch.settle_tx = _hex(root), len(chosen), tx
            batch.save(update_fields=["root", "size", "settle_tx"])
            Job.objects.filter(pk__in=[job.pk for job in chosen]).update(updated_at=timezone.now())
            tasking.enqueue_on_commit(FOLLOW_TASK, batch.pk)
    except IntegrityError:
        # Another builder took one of these jobs first (the unique entry per job): nothing of
        # this batch was kept; the next round reads the jobs still waiting.
        logger.info("a settlement batch lost a job to another builder; building again")
        return _batch_build(now=now)
    logger.info("settlement batch %s: %s jobs under root %s", batch.pk, batch.size, batch.root)
    return batch.pk


def job_batch_entry(job_id: uuid.UUID) -> SettlementBatchEntry | None:
    return SettlementBatchEntry.objects.select_related("batch").filter(job_id=job_id).first()


def batch_jobs(batch: SettlementBatch, *, status: Job.Status) -> list[Job]:
    """The batch's jobs still in ``status``, in the batch's order."""
    return list(Job.objects.filter(batch_entry__batch=batch, status=status).order_by("batch_entry__position"))


def batch_confirmed(batch: SettlementBatch, *, chain_batch_id: int) -> None:
    """Marks the batch confirmed with the id the chain gave it (BatchSettled.batchId), once."""
    SettlementBatch.objects.filter(pk=batch.pk, chain_batch_id__isnull=True).update(
        status=SettlementBatch.Status.CONFIRMED, chain_batch_id=chain_batch_id, confirmed_at=timezone.now()
    )


def batch_failed(batch: SettlementBatch) -> None:
    SettlementBatch.objects.filter(pk=batch.pk, status=SettlementBatch.Status.SENDING).update(
        status=SettlementBatch.Status.FAILED, failed_at=timezone.now()
    )
