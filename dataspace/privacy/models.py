"""The privacy ledger: every loss spent on a dataset, its limit, and answers given once.

The chain enforces each dataset's total (``UsageAgreements``: limit and used, in nano-ρ); the
ledger is the platform's side of it, read under a row lock before anything is sent on chain, so
concurrent requests never over-commit, and it also holds what the chain cannot: each consumer's
share and the losses spent at ingest (bucket edges and bounds estimated privately).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class DatasetBudget(models.Model):
    """A dataset's privacy limit in zCDP ρ (from its provider's ε at the space's δ) and how far
    the chain has been told. Its row is the lock every reservation on the dataset takes."""

    dataset = models.OneToOneField(
        "catalog.Dataset", primary_key=True, on_delete=models.CASCADE, related_name="privacy_budget"
    )
    rho_limit = models.FloatField(default=0.0)
    # Everything reserved or spent on the dataset, composed by the accountant (OpenDP) one loss
    # at a time under this row's lock; recomposed from the ledger when a loss is returned.
    rho_committed = models.FloatField(default=0.0)
    # What the chain holds, once the write that set it is confirmed (nano-ρ there).
    chain_rho_limit = models.FloatField(default=0.0)
    chain_non_personal = models.BooleanField(default=False)
    # The write on its way (the provider's wallet sends it); null when the chain is up to date.
    pending_tx = models.OneToOneField(
        "chain.ChainTransaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"privacy budget of {self.dataset_id}: rho {self.rho_limit:g}"


class ConsumerShare(models.Model):
    """What one consumer has reserved or spent on one dataset, through all their agreements (an
    offer's ``privacy_budget`` caps it). Updated under the dataset budget's lock."""

    dataset = models.ForeignKey("catalog.Dataset", on_delete=models.CASCADE, related_name="privacy_shares")
    consumer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="privacy_shares")
    rho_committed = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "consumer"], name="one_share_per_consumer")]

    def __str__(self) -> str:
        return f"{self.consumer_id} on {self.dataset_id}: rho {self.rho_committed:g}"


class PrivacyLoss(models.Model):
    """One privacy loss on a dataset: reserved when a job is accepted, spent once anything that
    depends on the data was released (an answer, or a refusal decided on a noisy count),
    returned only if nothing was (the chain refused the use, the computation never ran)."""

    class Kind(models.TextChoices):
        JOB = "job"  # a consumer's job
        INGEST = "ingest"  # bounds or bucket edges estimated privately when the store was built

    class Status(models.TextChoices):
        RESERVED = "reserved"
        SPENT = "spent"
        RETURNED = "returned"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dataset = models.ForeignKey("catalog.Dataset", on_delete=models.CASCADE, related_name="privacy_losses")
    consumer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="privacy_losses"
    )
    job_id = models.UUIDField(null=True, blank=True, unique=True)  # compute.Job, by id (no import back)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    rho = models.FloatField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RESERVED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["dataset", "status"]), models.Index(fields=["dataset", "consumer", "status"])]

    def __str__(self) -> str:
        return f"{self.kind} rho {self.rho:g} on {self.dataset_id} ({self.status})"


class CachedAnswer(models.Model):
    """The noisy answer to a canonical query (dataset store, operation, parameters, ε), given
    again to whoever asks the same: averaging repeated answers then learns nothing new."""

    dataset = models.ForeignKey("catalog.Dataset", on_delete=models.CASCADE, related_name="cached_answers")
    query_key = models.CharField(max_length=64)
    answer = models.JSONField()  # what the custodian released: result, noise, error bounds
    first_job_id = models.UUIDField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "query_key"], name="one_answer_per_query")]

    def __str__(self) -> str:
        return f"cached answer {self.query_key[:12]} on {self.dataset_id}"
