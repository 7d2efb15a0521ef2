"""Job steps as Celery tasks on three queues: ``chain`` (authorise, settle, refund through the
outbox), ``he`` (compute over ciphertexts) and ``custody`` (decrypt and release). A worker can
serve any subset, on any host. Every task is idempotent, acked late and rejected when its worker
dies, so a killed worker's job is redelivered; attempts are bounded."""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import F

from dataspace.chain import gateway
from dataspace.compute import custody, engines, jobs, stores
from dataspace.compute.models import Job

logger = logging.getLogger(__name__)
MAX_COMPUTE_ATTEMPTS = 3
MAX_RELEASE_ATTEMPTS = 3


def _follow(task: Any, progress: Any, job_id: str) -> None:
    """Runs one chain step; while the write is on its way (or the node away) looks again later."""
    try:
        done = progress(uuid.UUID(job_id))
    except (gateway.ChainUnavailable, OperationalError) as exc:
        raise task.retry(countdown=min(30, 2 ** min(task.request.retries, 5)), exc=exc) from None
    if not done:
        raise task.retry(countdown=settings.CHAIN_POLL_SECONDS)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=600)
def authorise_job(self: Any, job_id: str) -> None:
    _follow(self, jobs.authorise_progress, job_id)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=600)
def settle_job(self: Any, job_id: str) -> None:
    _follow(self, jobs.settle_progress, job_id)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=600)
def refund_job(self: Any, job_id: str) -> None:
    _follow(self, jobs.refund_progress, job_id)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def compute_job(self: Any, job_id: str) -> None:
    job_uuid = uuid.UUID(job_id)
    # Counted before the work: a job that kills its worker every time stops after a few tries.
    if not Job.objects.filter(pk=job_uuid, status=Job.Status.AUTHORISED).update(
        compute_attempts=F("compute_attempts") + 1
    ):
        return
    job = Job.objects.get(pk=job_uuid)
    if job.compute_attempts > MAX_COMPUTE_ATTEMPTS:
        jobs.fail(job.id, code="compute_failed", message=f"The computation failed {MAX_COMPUTE_ATTEMPTS} times.")
        return
    try:
        result = engines.HEEngine().run(job)
        blob, digest = engines.result_save(job, result)
    except Exception as exc:
        logger.exception("job %s: computation failed", job.id)
        if job.compute_attempts >= MAX_COMPUTE_ATTEMPTS:
            jobs.fail(job.id, code="compute_failed", message=f"The computation failed ({type(exc).__name__}).")
            return
        raise self.retry(countdown=2, exc=exc) from None
    with transaction.atomic():
        if jobs.transition(
            job.id, source=Job.Status.AUTHORISED, target=Job.Status.COMPUTED, result_blob=blob, ciphertext_sha256=digest
        ):
            transaction.on_commit(lambda: jobs.dispatch("release", job.id))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=10)
def release_job(self: Any, job_id: str) -> None:
    job_uuid = uuid.UUID(job_id)
    # Counted before the work, as for compute: a release that fails or kills the custodian every
    # time ends in a refund instead of being swept forever.
    if not Job.objects.filter(pk=job_uuid, status=Job.Status.COMPUTED).update(
        release_attempts=F("release_attempts") + 1
    ):
        return
    attempts = Job.objects.values_list("release_attempts", flat=True).get(pk=job_uuid)
    if attempts > MAX_RELEASE_ATTEMPTS:
        jobs.fail(job_uuid, code="release_failed", message=f"The release failed {MAX_RELEASE_ATTEMPTS} times.")
        return
    try:
        custody.release(job_uuid)
    except (gateway.ChainUnavailable, OperationalError) as exc:
        # The node or the database away is not the job's fault: not counted; tried again (and swept
        # later if it stays away).
        with contextlib.suppress(OperationalError):
            Job.objects.filter(pk=job_uuid).update(release_attempts=F("release_attempts") - 1)
        raise self.retry(countdown=min(30, 2 ** min(self.request.retries, 5)), exc=exc) from None
    except Exception as exc:
        logger.exception("job %s: release failed", job_uuid)
        if attempts >= MAX_RELEASE_ATTEMPTS:
            jobs.fail(job_uuid, code="release_failed", message=f"The release failed ({type(exc).__name__}).")
            return
        raise self.retry(countdown=2, exc=exc) from None


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3, autoretry_for=(OperationalError,))
def build_encrypted_store(self: Any, dataset_id: str) -> None:
    stores.store_build(dataset_id=uuid.UUID(dataset_id))


@shared_task
def sweep_jobs() -> int:
    """Re-sends the next step of jobs nobody moved for a while."""
    stalled = jobs.stalled_jobs(older_than=jobs.sweep_interval())
    for step, job_id in stalled:
        jobs.dispatch(step, job_id)
    return len(stalled)
