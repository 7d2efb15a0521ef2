"""Compute reads: a consumer's jobs, a dataset's encrypted store, and the work the sweepers find."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from dataspace.accounts.models import User
from dataspace.catalog.models import Dataset
from dataspace.compute.he.layout import StoreLayout
from dataspace.compute.models import EncryptedStore, Job, SettlementBatch, SettlementBatchEntry
from dataspace.compute.receipts import BATCH_FIELD
from dataspace.errors import DomainError, ErrorCode, NotFound


def job_batch_proof(job: Job) -> dict[str, Any] | None:
    """ISSUE-14: what a batched job's receipt carries beside the custodian's signed part once its
    batch is confirmed: the chain's batch id and root, the job's leaf and its Merkle proof
    (``verifyReceipt(batch_id, leaf, proof)`` on chain)."""
    try:
        entry = job.batch_entry
    except SettlementBatchEntry.DoesNotExist:
        return None
    batch = entry.batch
    if batch.status != SettlementBatch.Status.CONFIRMED or batch.chain_batch_id is None:
        return None
    return {
        "batch_id": batch.chain_batch_id,
        "root": batch.root,
        "leaf": entry.leaf,
        "proof": list(entry.proof),
        "tx_hash": batch.settle_tx.tx_hash if batch.settle_tx else None,
    }


def job_receipt(job: Job) -> dict[str, Any] | None:
    """The receipt a settled (or withheld) job's consumer gets: the custodian's signed receipt
    and, for a job settled in a batch, its batch proof."""
    if job.receipt is None or job.status not in (Job.Status.SETTLED, Job.Status.WITHHELD):
        return None
    proof = job_batch_proof(job)
    return job.receipt if proof is None else {**job.receipt, BATCH_FIELD: proof}


def job_list(*, consumer: User) -> QuerySet[Job]:
    return Job.objects.filter(consumer=consumer).select_related(
        "record_tx", "settle_tx", "refund_tx", "batch_entry__batch__settle_tx"
    )


def job_get(*, consumer: User, job_id: uuid.UUID) -> Job:
    job = job_list(consumer=consumer).filter(pk=job_id).first()
    if job is None:
        raise NotFound("job")
    return job


def jobs_unmoved_since(*, cutoff: datetime, statuses: list[Job.Status]) -> list[tuple[Job.Status, uuid.UUID]]:
    """Unfinished jobs nobody moved since ``cutoff`` (a lost message, a worker that died)."""
    rows = Job.objects.filter(status__in=statuses, updated_at__lt=cutoff).values_list("status", "pk")[:500]
    return [(Job.Status(status), pk) for status, pk in rows]


def encrypted_store_get(*, dataset_id: uuid.UUID) -> EncryptedStore | None:
    return EncryptedStore.objects.filter(dataset_id=dataset_id).first()


def encrypted_store_get_ready(*, dataset: Dataset) -> EncryptedStore:
    """The store jobs run on; ``encrypted_store_not_ready`` until it is built."""
    store = encrypted_store_get(dataset_id=dataset.id)
    if store is None or store.status != EncryptedStore.Status.READY:
        state = "not built" if store is None else store.status
        raise DomainError(
            f"The dataset's encrypted store is {state}; computations start once it is ready.",
            code=ErrorCode.ENCRYPTED_STORE_NOT_READY,
        )
    return store


def encrypted_store_layout(store: EncryptedStore) -> StoreLayout:
    """The store's layout, read as its dataset's privacy terms say (a layout written before bounds
    existed serves its exact scale as a bound only for a non-personal dataset)."""
    return StoreLayout.from_json(store.layout, non_personal=store.dataset.non_personal)


def datasets_awaiting_store(*, created_before: datetime, building_before: datetime) -> list[uuid.UUID]:
    """Datasets whose encrypted store should be built and is not being built: none was ever
    started (its message was lost, or the broker was away when the ingest committed), or its
    build started before ``building_before`` and never finished (longer than any build takes)."""
    never_started = Q(encrypted_store__isnull=True, created_at__lt=created_before)
    # A null start is a build claimed before starts were recorded: long ago.
    stuck = Q(encrypted_store__status=EncryptedStore.Status.BUILDING) & (
        Q(encrypted_store__building_since__lt=building_before) | Q(encrypted_store__building_since__isnull=True)
    )
    return list(Dataset.objects.filter(never_started | stuck).values_list("pk", flat=True)[:200])
