"""Running the reconciliation and keeping its report."""

from __future__ import annotations

from django.utils import timezone

from dataspace import tasking
from dataspace.audit.models import ReconcileReport
from dataspace.audit.reconcile import reconcile
from dataspace.chain import gateway

RECONCILE_TASK = "dataspace.audit.tasks.reconcile_chain"


def reconcile_run() -> ReconcileReport:
    """Compares chain and database now (the indexer caught up first) and stores the report."""
    started = timezone.now()
    report = reconcile()
    return ReconcileReport.objects.create(
        chain_id=gateway.chain_id(),
        ok=report.ok,
        checked=dict(report.checked),
        mismatches=report.mismatches,
        started_at=started,
    )


def reconcile_request() -> bool:
    """Queues a run; False when the broker cannot take it now."""
    return tasking.enqueue(RECONCILE_TASK)


def reconcile_latest() -> ReconcileReport | None:
    return ReconcileReport.objects.filter(chain_id=gateway.chain_id()).first()
