"""What the platform knows about the chain: deployments, its own writes (the outbox) and the
events it has read (the index). The chain stays the source of truth; these rows let the platform
act exactly once and reconcile."""

from __future__ import annotations

from django.db import models


class Deployment(models.Model):
    chain_id = models.BigIntegerField()
    name = models.CharField(max_length=64)
    address = models.CharField(max_length=42)
    tx_hash = models.CharField(max_length=66, blank=True)
    block_number = models.BigIntegerField(null=True)
    bytecode_hash = models.CharField(max_length=66)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "name"], name="one_deployment_per_contract")]

    def __str__(self) -> str:
        return f"{self.name} at {self.address} (chain {self.chain_id})"


class SenderNonce(models.Model):
    """The next nonce of an account the platform sends from. Assigned under a row lock, so
    concurrent senders never reuse or skip one."""

    chain_id = models.BigIntegerField()
    address = models.CharField(max_length=42)
    next_nonce = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "address"], name="one_nonce_row_per_sender")]

    def __str__(self) -> str:
        return f"{self.address} next nonce {self.next_nonce}"


class ChainTransaction(models.Model):
    """One intended chain write. Signed bytes are saved before broadcasting, so a retry sends
    the same transaction (same hash) and never signs a second one."""

    class Status(models.TextChoices):
        PENDING = "pending"  # intended; not signed
        SIGNED = "signed"  # nonce assigned, raw bytes and hash saved; maybe broadcast
        SENT = "sent"  # the node accepted it
        CONFIRMED = "confirmed"  # mined, succeeded, and buried under the confirmation depth
        FAILED = "failed"  # reverted (or would revert): the reason is decoded

    chain_id = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=200)
    kind = models.CharField(max_length=64)
    contract = models.CharField(max_length=64)
    function = models.CharField(max_length=64)
    args = models.JSONField(default=list)
    sender = models.CharField(max_length=42)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    nonce = models.BigIntegerField(null=True, blank=True)
    raw_tx = models.BinaryField(null=True, blank=True)
    tx_hash = models.CharField(max_length=66, blank=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    broadcasts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    revert_reason = models.TextField(blank=True)
    block_number = models.BigIntegerField(null=True, blank=True)
    block_hash = models.CharField(max_length=66, blank=True)
    gas_used = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "idempotency_key"], name="one_write_per_key"),
            models.UniqueConstraint(
                fields=["chain_id", "sender", "nonce"],
                name="one_write_per_nonce",
                condition=models.Q(nonce__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key} ({self.status})"


class ChainEvent(models.Model):
    chain_id = models.BigIntegerField()
    contract = models.CharField(max_length=64)
    address = models.CharField(max_length=42)
    event = models.CharField(max_length=64, db_index=True)
    args = models.JSONField(default=dict)
    block_number = models.BigIntegerField(db_index=True)
    block_hash = models.CharField(max_length=66)
    tx_hash = models.CharField(max_length=66)
    log_index = models.IntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "tx_hash", "log_index"], name="one_row_per_log"),
        ]
        ordering = ["block_number", "log_index"]

    def __str__(self) -> str:
        return f"{self.event} in block {self.block_number}"


class IndexerCursor(models.Model):
    """The last block indexed and its hash: a different hash at that height means a reorg."""

    chain_id = models.BigIntegerField(unique=True)
    block_number = models.BigIntegerField()
    block_hash = models.CharField(max_length=66)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"chain {self.chain_id} indexed to {self.block_number}"
