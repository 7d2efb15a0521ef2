"""Encrypted column stores, their CKKS keys and the jobs computed over them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from dataspace.chain.models import ChainTransaction
from dataspace.vault.models import KeyMaterialManager, KeyMaterialModel


class EncryptedStore(models.Model):
    """A dataset's columns under CKKS, built at ingest. The layout names every ciphertext series;
    the cohort counts (exact, from the plaintext at ingest) let requests whose cohort is below the
    policy's minimum be refused before anything is charged. Both stay server-side."""

    class Status(models.TextChoices):
        BUILDING = "building"
        READY = "ready"
        FAILED = "failed"

    dataset = models.OneToOneField(
        "catalog.Dataset", primary_key=True, on_delete=models.CASCADE, related_name="encrypted_store"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.BUILDING)
    blob_prefix = models.CharField(max_length=255, blank=True)
    layout = models.JSONField(default=dict)
    cohort_counts = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    stored_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # When the current attempt claimed the build: a build older than any build takes has died.
    building_since = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"encrypted store of {self.dataset_id} ({self.status})"


class HEKeyManager(KeyMaterialManager["HEKey"]):
    columns = ("secret_blob",)


class HEKey(KeyMaterialModel):
    """One CKKS key set of a dataset. The public context (evaluation keys, no secret key) is a
    plain blob workers load; the secret context is a vault-sealed blob only the custodian opens."""

    store = models.ForeignKey(EncryptedStore, on_delete=models.CASCADE, related_name="keys")
    level = models.CharField(max_length=16)
    public_blob = models.CharField(max_length=255)
    public_sha256 = models.CharField(max_length=64)
    secret_blob = models.CharField(max_length=255)
    data_key = models.OneToOneField("vault.DataKey", on_delete=models.PROTECT, related_name="+")

    objects = HEKeyManager()

    class Meta:
        base_manager_name = "objects"
        constraints = [models.UniqueConstraint(fields=["store", "level"], name="one_key_per_store_level")]

    def __str__(self) -> str:
        return f"{self.level} keys of {self.store_id}"


class Algorithm(models.Model):
    """ISSUE-13: an algorithm a consumer submitted for an offer (its canonical bundle, kept as
    the provider reviews it) and the provider's decision. ``measurement`` is the SHA-256 of the
    bundle and the sandbox profile (``Sandbox.measure``): what the provider approves and the
    chain pins (AlgorithmApprovals); a job runs only an approved one, in a TEE that proves it."""

    class Status(models.TextChoices):
        PENDING = "pending"  # submitted; the provider has not decided
        APPROVING = "approving"  # approved by the provider; AlgorithmApprovals.approve in the outbox
        APPROVED = "approved"  # the approval is confirmed on chain
        REJECTED = "rejected"
        REVOKING = "revoking"  # revoked by the provider; AlgorithmApprovals.revoke in the outbox
        REVOKED = "revoked"
        FAILED = "failed"  # the chain refused the approval

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    offer = models.ForeignKey("policies.Offer", on_delete=models.PROTECT, related_name="algorithms")
    consumer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="algorithms")
    name = models.CharField(max_length=128, blank=True)
    kind = models.CharField(max_length=16)
    bundle = models.TextField()  # the canonical bundle (enclaves.bundle, redlake/algorithm-bundle/v1)
    bundle_sha256 = models.CharField(max_length=64)
    measurement = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    reason = models.TextField(blank=True)
    approve_tx = models.OneToOneField(
        "chain.ChainTransaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoke_tx = models.OneToOneField(
        "chain.ChainTransaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"algorithm {self.id} on offer {self.offer_id} ({self.status})"


class AttestationNonce(models.Model):
    """ISSUE-13: a key-release nonce the custodian issued for one TEE job: single use (consumed
    by one conditional update, before the evidence is verified) and expiring. ``released_at``
    is set when a data key was wrapped to the attested enclave after it."""

    nonce = models.CharField(max_length=64, primary_key=True)
    job = models.ForeignKey("Job", on_delete=models.CASCADE, related_name="attestation_nonces")
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    consumed_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    refusal = models.CharField(max_length=64, blank=True)
    attestation_hash = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"nonce for job {self.job_id}"


class Job(models.Model):
    class Status(models.TextChoices):
        REQUESTED = "requested"  # accepted by the policy; recordUsage queued
        AUTHORISED = "authorised"  # recordUsage confirmed: the call is counted and paid from escrow
        COMPUTED = "computed"  # the HE worker produced the result ciphertext
        RELEASED = "released"  # the custodian decrypted, checked, noised and signed it
        SETTLED = "settled"  # settle(jobId, resultHash) confirmed: the consumer may read it
        # The custodian withheld the answer on a noisy count (a cohort below k): nothing but that
        # refusal is released, and it costs what an answer costs (settled on chain, loss spent).
        WITHHELD = "withheld"
        REJECTED = "rejected"  # the chain refused the use: nothing was charged
        FAILED = "failed"  # failed after authorisation: a refund is on its way
        REFUNDED = "refunded"  # refund confirmed: call and budget returned

    TERMINAL = (Status.SETTLED, Status.WITHHELD, Status.REJECTED, Status.REFUNDED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    consumer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs")
    agreement = models.ForeignKey("policies.Agreement", on_delete=models.PROTECT, related_name="jobs")
    dataset = models.ForeignKey("catalog.Dataset", on_delete=models.PROTECT, related_name="jobs")
    idempotency_key = models.CharField(max_length=128)
    request_digest = models.CharField(max_length=64)
    operation = models.CharField(max_length=64)
    # As the consumer sent them: their hash is what the consumer signed (UsageRecorded's
    # paramsHash), so the custodian checks it against the chain before releasing.
    request_params = models.JSONField(default=dict)
    params = models.JSONField(default=dict)  # normalised by the operation: what is computed
    purpose = models.CharField(max_length=128)
    epsilon = models.FloatField(default=0.0)
    # The job's privacy loss in zCDP (from epsilon at the space's delta); 0 for a non-personal
    # dataset or a query whose noisy answer is already cached.
    rho = models.FloatField(default=0.0)
    query_key = models.CharField(max_length=64, blank=True)  # the canonical query, for the answer cache
    nonce = models.DecimalField(max_digits=40, decimal_places=0)
    chain_job_id = models.CharField(max_length=66, unique=True)
    deadline = models.BigIntegerField()
    signature = models.CharField(max_length=140)
    signed_by_platform = models.BooleanField(default=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REQUESTED, db_index=True)
    record_tx = models.OneToOneField(
        "chain.ChainTransaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    settle_tx = models.OneToOneField(
        "chain.ChainTransaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    refund_tx = models.OneToOneField(
        "chain.ChainTransaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    compute_attempts = models.PositiveSmallIntegerField(default=0)
    release_attempts = models.PositiveSmallIntegerField(default=0)
    result_blob = models.CharField(max_length=255, blank=True)
    ciphertext_sha256 = models.CharField(max_length=64, blank=True)  # as the HE worker reported it
    result = models.JSONField(null=True, blank=True)
    result_hash = models.CharField(max_length=66, blank=True)
    receipt = models.JSONField(null=True, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    # ISSUE-13: the approved algorithm a ``tee`` job runs, and what its run produced (the result
    # signature, the verified claims, the meters), for the custodian's release.
    algorithm = models.ForeignKey(Algorithm, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs")
    tee_run = models.JSONField(null=True, blank=True)
    failure_message = models.TextField(blank=True)
    requested_at = models.DateTimeField(auto_now_add=True)
    authorised_at = models.DateTimeField(null=True, blank=True)
    computed_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    withheld_at = models.DateTimeField(null=True, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.UniqueConstraint(fields=["consumer", "idempotency_key"], name="one_job_per_idempotency_key"),
        ]
        indexes = [models.Index(fields=["status", "updated_at"])]

    def __str__(self) -> str:
        return f"job {self.id} {self.operation} ({self.status})"

    @property
    def settlement_tx(self) -> ChainTransaction | None:
        """The write that settles the job: its own, or (ISSUE-14) its batch's settleBatch."""
        if self.settle_tx_id is not None:
            return self.settle_tx
        try:
            entry = self.batch_entry  # loaded with the job where the selectors ask for it
        except SettlementBatchEntry.DoesNotExist:
            return None
        return entry.batch.settle_tx


class SettlementBatch(models.Model):
    """ISSUE-14: released jobs settled by one ``settleBatch(root, jobIds)`` write. The root is the
    Merkle root of the jobs' receipt leaves (``chain.merkle``); once the write is confirmed the
    chain's batch id is kept, and each job's entry holds the leaf and proof its receipt carries.
    A batch the chain refuses settles none of its jobs: each then settles alone or is refunded."""

    class Status(models.TextChoices):
        SENDING = "sending"  # the settleBatch write is in the outbox
        CONFIRMED = "confirmed"  # the write is confirmed: every job in it is settled on chain
        FAILED = "failed"  # the write reverted: its jobs fell back to settling alone

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SENDING, db_index=True)
    root = models.CharField(max_length=66)
    size = models.PositiveIntegerField()
    settle_tx = models.OneToOneField(
        "chain.ChainTransaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    chain_batch_id = models.BigIntegerField(null=True, blank=True)  # BatchSettled.batchId, once confirmed
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"settlement batch {self.pk} of {self.size} ({self.status})"


class SettlementBatchEntry(models.Model):
    """One job of a settlement batch: its place in the batch, its receipt leaf and the proof that
    leads from the leaf to the batch's root. One entry per job, ever: no job is in two batches."""

    batch = models.ForeignKey(SettlementBatch, on_delete=models.PROTECT, related_name="entries")
    job = models.OneToOneField(Job, on_delete=models.PROTECT, related_name="batch_entry")
    position = models.PositiveIntegerField()
    leaf = models.CharField(max_length=66)
    proof = models.JSONField(default=list)  # sibling hashes, 0x hex, from the leaf up

    class Meta:
        ordering = ["batch", "position"]
        constraints = [models.UniqueConstraint(fields=["batch", "position"], name="one_job_per_batch_position")]

    def __str__(self) -> str:
        return f"job {self.job_id} at {self.position} of batch {self.batch_id}"
