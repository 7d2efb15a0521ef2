"""Catalogue background work. Tasks take ids and call services."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from dataspace.catalog import services


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
