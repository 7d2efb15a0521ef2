"""Catalogue background work. Tasks take ids and call services."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from dataspace import tasking
from dataspace.catalog import onchain, services


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def ingest_dataset(self: Any, ingest_id: str) -> None:
    try:
        services.ingest_run(ingest_id=uuid.UUID(ingest_id))
    except OperationalError:
        if self.request.retries >= self.max_retries:
            services.ingest_give_up(ingest_id=uuid.UUID(ingest_id), reason="The database stayed unavailable.")
            return
        raise


@shared_task
def requeue_stale_ingests() -> int:
    return services.ingest_requeue_stale(
        queued_for=timedelta(seconds=settings.INGEST_REQUEUE_QUEUED_AFTER),
        running_for=timedelta(seconds=settings.INGEST_REQUEUE_RUNNING_AFTER),
    )


@shared_task
def register_datasets_on_chain() -> int:
    return services.datasets_register_pending()


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=60)
def follow_dataset_metadata(self: Any, dataset_id: str) -> None:
    tasking.run_step(self, lambda: onchain.metadata_progress(dataset_id=uuid.UUID(dataset_id)))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=60)
def retire_dataset(self: Any, dataset_id: str, provider: str) -> None:
    tasking.run_step(self, lambda: onchain.retire_progress(dataset_id=uuid.UUID(dataset_id), provider=provider))


@shared_task
def sweep_dataset_registry() -> int:
    """Re-sends the registry follow-ups nobody finished: metadata the chain holds stale, deleted
    datasets still active there."""
    stale, unretired = onchain.out_of_step()
    for dataset_id in stale:
        tasking.enqueue(onchain.FOLLOW_METADATA_TASK, str(dataset_id))
    for dataset_id, provider in unretired:
        tasking.enqueue(onchain.RETIRE_TASK, str(dataset_id), provider)
    return len(stale) + len(unretired)
