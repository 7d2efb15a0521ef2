"""Chain background work: the outbox sender (queue ``chain``), its sweeper and the indexer."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from dataspace.chain import gateway, indexer, outbox
from dataspace.chain.models import ChainTransaction


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(gateway.ChainUnavailable,),
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=30,
)
def send_chain_write(self: Any, tx_id: int) -> str:
    tx = outbox.write_progress(tx_id=tx_id)
    if tx.status in {ChainTransaction.Status.SIGNED, ChainTransaction.Status.SENT}:
        # Mined but not yet deep enough, or waiting for the node: look again shortly. After the
        # last retry the sweeper keeps it moving.
        raise self.retry(countdown=settings.CHAIN_POLL_SECONDS)
    return str(tx.status)


@shared_task
def sweep_chain_writes() -> int:
    ids = outbox.writes_to_retry(older_than_seconds=settings.CHAIN_SWEEP_AFTER)
    for tx_id in ids:
        send_chain_write.delay(tx_id)
    return len(ids)


@shared_task
def index_chain_events() -> int:
    report = indexer.index_events()
    return report.events if report else 0
