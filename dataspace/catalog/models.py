"""Datasets and their ingests. Only metadata lives here; content is a sealed blob in the vault."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Ingest(models.Model):
    """One upload on its way to becoming a dataset. A dataset exists only once ingest succeeds;
    a failed ingest keeps its error and nothing else (its blob and data key are deleted)."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ingests")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    file_name = models.CharField(max_length=255)
    file_format = models.CharField(max_length=16)
    delimiter = models.CharField(max_length=1, default=",")
    size_bytes = models.BigIntegerField()
    content_sha256 = models.CharField(max_length=64)
    blob_name = models.CharField(max_length=255, blank=True)
    data_key = models.ForeignKey("vault.DataKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    metadata = models.JSONField(default=dict)
    attempts = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    dataset = models.OneToOneField("Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="ingest")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"ingest {self.id} ({self.status})"


class Dataset(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="datasets")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    keywords = models.JSONField(default=list, blank=True)
    licence = models.CharField(max_length=200, blank=True)
    file_format = models.CharField(max_length=16)
    # Column name, type, null count and, for categorical columns, cardinality and categories.
    schema = models.JSONField(default=list)
    # Categorical columns whose values the provider allows the public profile to show.
    public_value_columns = models.JSONField(default=list, blank=True)
    # The provider's declaration that no row describes a person: answers on it carry no noise.
    # Pinned on chain before the first offer, and irreversible from then on.
    non_personal = models.BooleanField(default=False)
    # The total differential-privacy loss (epsilon, at the space's delta) the provider allows on
    # this dataset, across every consumer and agreement. Raised, never lowered. 0 when non-personal.
    privacy_epsilon = models.FloatField(default=1.0)
    row_count = models.BigIntegerField()
    size_bytes = models.BigIntegerField()
    content_sha256 = models.CharField(max_length=64)
    blob_name = models.CharField(max_length=255, unique=True)
    data_key = models.OneToOneField("vault.DataKey", on_delete=models.PROTECT, related_name="+")
    # The outbox write that registers the dataset on chain (null until queued).
    chain_registration = models.OneToOneField(
        "chain.ChainTransaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["provider", "-created_at"])]

    def __str__(self) -> str:
        return self.title
