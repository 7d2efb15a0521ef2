"""Reconciliation reports: what the last comparison of chain and database found."""

from __future__ import annotations

from django.db import models


class ReconcileReport(models.Model):
    """One run of the reconciliation. Auditors read the latest; runs are queued, never made
    inside a request (catching the indexer up can take long on a busy chain)."""

    chain_id = models.BigIntegerField()
    ok = models.BooleanField()
    checked = models.JSONField(default=dict)
    mismatches = models.JSONField(default=list)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-finished_at", "-pk"]

    def __str__(self) -> str:
        return f"reconciliation of chain {self.chain_id} at {self.finished_at:%Y-%m-%d %H:%M:%S} ({self.ok})"
