"""Chain background work: the outbox sender (queue ``chain``), its sweeper and the indexer."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from dataspace import tasking
from dataspace.chain import indexer, outbox


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=30)
def send_chain_write(self: Any, tx_id: int) -> None:
    # Mined but not yet deep enough, or waiting for the node: look again shortly. After the last
    # retry the sweeper keeps it moving.
    tasking.run_step(self, lambda: not outbox.write_pending(tx_id=tx_id))


@shared_task
def sweep_chain_writes() -> int:
    ids = outbox.writes_to_retry(older_than_seconds=settings.CHAIN_SWEEP_AFTER)
    for tx_id in ids:
        tasking.enqueue(outbox.SEND_TASK, tx_id)
    return len(ids)


@shared_task
def index_chain_events() -> int:
    report = indexer.index_events()
    return report.events if report else 0
