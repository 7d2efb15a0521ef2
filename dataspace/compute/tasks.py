"""Job steps as Celery tasks on three queues: ``chain`` (authorise, settle, refund through the
outbox), ``he`` (compute over ciphertexts) and ``custody`` (decrypt and release), plus the
encrypted-store build on ``ingest`` and the sweepers. A worker can serve any subset, on any host.
Every task is acked late and rejected when its worker dies, so a killed worker's job is
redelivered; the services they call are idempotent and bound their own attempts."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from dataspace import tasking
from dataspace.compute import batches, jobs, stores
from dataspace.role_checks import require_role
from dataspace.roles import Role


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=600)
def authorise_job(self: Any, job_id: str) -> None:
    tasking.run_step(self, lambda: jobs.job_authorise(job_id=uuid.UUID(job_id)))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def compute_job(self: Any, job_id: str) -> None:
    tasking.run_step(self, lambda: jobs.job_compute(job_id=uuid.UUID(job_id)))


# ISSUE-13: the compute step of a ``tee`` job, on the ``tee`` queue (the sandbox launcher; for the
# SIMULATED backend the custodian's worker, which holds the data keyring for the key broker).
@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def compute_tee_job(self: Any, job_id: str) -> None:
    # Refused before an attempt is counted: a misrouted task costs the job nothing.
    require_role(Role.CUSTODIAN, purpose="Running a tee job (the sandbox launcher and its key broker)")
    tasking.run_step(self, lambda: jobs.job_compute(job_id=uuid.UUID(job_id)))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=600)
def follow_algorithm(self: Any, algorithm_id: str) -> None:
    """ISSUE-13: follows an algorithm's approve or revoke write (``chain`` queue)."""
    from dataspace.compute import algorithms

    tasking.run_step(self, lambda: algorithms.algorithm_progress(algorithm_id=uuid.UUID(algorithm_id)))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=10)
def release_job(self: Any, job_id: str) -> None:
    tasking.run_step(self, lambda: jobs.job_release(job_id=uuid.UUID(job_id)))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=600)
def settle_job(self: Any, job_id: str) -> None:
    tasking.run_step(self, lambda: jobs.job_settle(job_id=uuid.UUID(job_id)))


# ISSUE-14: settlement batches (``chain`` queue). A flush builds the batches that are due; a lost
# or failed flush is made good by the job sweeper, which re-sends a waiting job's settle step.
@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=10)
def flush_settlement_batches(self: Any) -> None:
    tasking.run_step(self, lambda: bool(batches.batches_flush()) or None)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=600)
def follow_settlement_batch(self: Any, batch_id: int) -> None:
    tasking.run_step(self, lambda: jobs.settlement_batch_follow(batch_id=batch_id))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=600)
def refund_job(self: Any, job_id: str) -> None:
    tasking.run_step(self, lambda: jobs.job_refund(job_id=uuid.UUID(job_id)))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3, autoretry_for=(OperationalError,))
def build_encrypted_store(self: Any, dataset_id: str) -> None:
    stores.encrypted_store_build(dataset_id=uuid.UUID(dataset_id))


@shared_task
def sweep_jobs() -> int:
    """Re-sends the next step of jobs nobody moved for a while (and refunds tee jobs no capable
    worker took)."""
    jobs.jobs_tee_unclaimed_fail(older_than=timedelta(seconds=settings.TEE_UNCLAIMED_AFTER))
    stalled = jobs.jobs_stalled(older_than=jobs.sweep_interval())
    for task_name, job_id in stalled:
        tasking.enqueue(task_name, str(job_id))
    return len(stalled)


@shared_task
def sweep_encrypted_stores() -> int:
    """Re-sends the build of encrypted stores whose message was lost or whose builder died."""
    return stores.encrypted_stores_requeue(
        queued_for=timedelta(seconds=settings.STORE_BUILD_REQUEUE_QUEUED_AFTER),
        building_for=timedelta(seconds=settings.STORE_BUILD_REQUEUE_RUNNING_AFTER),
    )
