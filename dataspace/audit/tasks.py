"""Audit background work: the reconciliation, on request and on a schedule."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from dataspace import tasking
from dataspace.audit import services


@shared_task(bind=True, acks_late=True, max_retries=10)
def reconcile_chain(self: Any) -> None:
    tasking.run_step(self, lambda: bool(services.reconcile_run()))
