"""Pinning datasets' privacy terms on chain (queue ``chain``), and its sweeper."""

from __future__ import annotations

import uuid
from typing import Any

from celery import shared_task

from dataspace import tasking
from dataspace.privacy import onchain


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=600)
def follow_dataset_terms(self: Any, dataset_id: str) -> None:
    tasking.run_step(self, lambda: onchain.terms_progress(dataset_id=uuid.UUID(dataset_id)))


@shared_task
def sweep_dataset_terms() -> int:
    ids = onchain.datasets_out_of_sync()
    for dataset_id in ids:
        onchain.terms_sync_request(dataset_id=dataset_id)
    return len(ids)
