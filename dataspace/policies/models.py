"""Offers and agreements: the platform's mirror of what the chain holds, plus the reservations
that keep concurrent requests within the terms before anything is sent on chain."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Offer(models.Model):
    """A provider's terms for one dataset, as an ODRL policy whose hash is pinned on chain."""

    class Status(models.TextChoices):
        PENDING = "pending"  # publishOffer queued in the outbox
        PUBLISHED = "published"  # confirmed on chain; chain_offer_id is set
        FAILED = "failed"  # the chain refused it; reason kept

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dataset = models.ForeignKey("catalog.Dataset", on_delete=models.PROTECT, related_name="offers")
    provider = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="offers")
    purposes = models.JSONField(default=list)
    operations = models.JSONField(default=list)
    max_calls = models.PositiveIntegerField()
    price_per_call = models.DecimalField(max_digits=40, decimal_places=0)  # token base units
    duration_seconds = models.PositiveBigIntegerField()
    # The most epsilon one consumer may spend on the dataset through this offer's agreements (the
    # dataset's own total binds everyone together); 0 for a non-personal dataset.
    privacy_budget = models.FloatField(default=0.0)
    min_cohort = models.PositiveIntegerField(default=10)
    # ISSUE-13: TEE execution terms (see odrl.Terms); compute_rate and max_cpu_millis are pinned
    # on chain by publishOffer (max_cpu_millis > 0: a metered offer, settled by settleMetered).
    allow_sandbox = models.BooleanField(default=False)
    compute_rate = models.DecimalField(max_digits=40, decimal_places=0, default=0)
    max_cpu_millis = models.PositiveBigIntegerField(default=0)
    memory_limit_bytes = models.PositiveBigIntegerField(default=512 * 1024 * 1024)
    wall_seconds = models.PositiveIntegerField(default=60)
    policy = models.JSONField()  # the ODRL document
    policy_hash = models.CharField(max_length=66)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    failure = models.TextField(blank=True)
    publish_tx = models.OneToOneField(
        "chain.ChainTransaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    chain_offer_id = models.BigIntegerField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"offer {self.id} on {self.dataset_id} ({self.status})"


class Agreement(models.Model):
    """A consumer's acceptance of an offer: escrow approved, then the offer accepted on chain."""

    class Status(models.TextChoices):
        PENDING = "pending"  # approve / acceptOffer on their way
        ACTIVE = "active"  # confirmed on chain; chain_agreement_id and expires_at are set
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="agreements")
    consumer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agreements")
    calls = models.PositiveIntegerField()
    amount = models.DecimalField(max_digits=40, decimal_places=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    failure = models.TextField(blank=True)
    approve_tx = models.OneToOneField(
        "chain.ChainTransaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    accept_tx = models.OneToOneField(
        "chain.ChainTransaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    chain_agreement_id = models.BigIntegerField(null=True, blank=True, unique=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Calls reserved under this row's lock before a use is sent on chain; released on refusal.
    # (Privacy loss is the dataset's, in dataspace.privacy: never an agreement's own.)
    calls_reserved = models.PositiveIntegerField(default=0)
    next_nonce = models.PositiveBigIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"agreement {self.id} ({self.status})"
