"""A dataset's encrypted column store, the Django side: building it on the ingest worker (the one
place, besides an enclave, that may read plaintext: fresh CKKS keys per dataset, every numeric
and categorical column encrypted by the engine in ``he/``, the secret keys sealed for the
custodian), re-sending builds that were lost, and crypto-shredding it."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dataspace import tasking
from dataspace.catalog import selectors as catalog_selectors
from dataspace.catalog.models import Dataset
from dataspace.catalog.reading import dataset_batches
from dataspace.compute import keystore, selectors
from dataspace.compute.he import keys as he_keys
from dataspace.compute.he.encryption import encrypt_columns
from dataspace.compute.he.layout import ABOVE, BELOW, MAX_CATEGORIES, NULL, ColumnKind, StoreLayout
from dataspace.compute.he.params import Level
from dataspace.compute.he.plaintext import ABOVE_CELL, BELOW_CELL, NULL_CELL, cell_index, numeric_values
from dataspace.compute.he.profiling import NUMERIC_TYPES, StoreOptions
from dataspace.compute.he.store import delete_store
from dataspace.compute.models import EncryptedStore
from dataspace.errors import DomainError
from dataspace.privacy import services as privacy
from dataspace.vault import blobs
from dataspace.vault.models import DataKey

logger = logging.getLogger(__name__)
MAX_BUILD_ATTEMPTS = 3
BUILD_TASK = "dataspace.compute.tasks.build_encrypted_store"


def _options(dataset: Dataset) -> StoreOptions:
    """The build's options: the provider's upload choices (levels, bucket edges, bounds) and what
    may stand in for bounds and edges it did not declare."""
    encryption: dict[str, Any] = {}
    ingest = getattr(dataset, "ingest", None)
    if ingest is not None:
        encryption = ingest.metadata.get("encryption", {}) or {}
    numeric = {column["name"] for column in dataset.schema if column.get("type") in NUMERIC_TYPES}
    sums_only = set(encryption.get("sums_only", []))
    categorical = {
        column["name"]
        for column in dataset.schema
        if column.get("type") == "categorical"
        and 0 < len(column.get("categories") or []) <= MAX_CATEGORIES
        and int(column.get("cardinality") or 0) <= MAX_CATEGORIES
    }
    return StoreOptions(
        levels={column: Level.SUMS for column in encryption.get("sums_only", [])},
        buckets={column: [float(e) for e in edges] for column, edges in encryption.get("buckets", {}).items()},
        # Checked against the file's head at upload; a column the full pass found not to be a
        # number (a late text value) is not encrypted as one, and its bounds mean nothing.
        bounds={
            column: (float(lo), float(hi))
            for column, (lo, hi) in encryption.get("bounds", {}).items()
            if column in numeric
        },
        # The declared group-by pairs the store can prepare: a pair the full pass found not to be a
        # categorical and a products-level number is left to the streamed path, not a failed build.
        group_by={
            by: kept
            for by, columns in encryption.get("group_by", {}).items()
            if by in categorical
            and by not in sums_only
            and (kept := [c for c in columns if c in numeric and c not in sums_only])
        },
        # A non-personal dataset may use its exact extremes and quantiles. A personal one uses
        # what its provider declared; asked to, it estimates the rest privately, spending a share
        # of the dataset's budget (recorded in the ledger once the store is built).
        non_personal=dataset.non_personal,
        estimate_bounds_rho=(
            privacy.dataset_rho_limit(dataset) * settings.PRIVACY_INGEST_ESTIMATE_SHARE
            if encryption.get("estimate_missing") and not dataset.non_personal
            else 0.0
        ),
    )


def _claim(dataset_id: uuid.UUID) -> EncryptedStore | None:
    """Marks the store BUILDING under a fresh blob prefix, or returns None if there is nothing to
    build. Whatever an earlier attempt left under its own prefix (a worker killed mid-build writes
    part of a store and never saves its keys, so those blobs cannot be decrypted) is deleted."""
    with transaction.atomic():
        store, _ = EncryptedStore.objects.select_for_update().get_or_create(dataset_id=dataset_id)
        if store.status == EncryptedStore.Status.READY:
            return None
        if store.attempts >= MAX_BUILD_ATTEMPTS:
            store.status, store.error = EncryptedStore.Status.FAILED, "The encrypted store failed to build 3 times."
            store.save(update_fields=["status", "error"])
            return None
        abandoned = store.blob_prefix
        # A fresh prefix per attempt: a build killed half-way never collides with the next one.
        store.blob_prefix = f"he/{dataset_id}/{uuid.uuid4().hex[:12]}"
        store.attempts += 1
        store.status = EncryptedStore.Status.BUILDING
        store.building_since = timezone.now()
        store.save(update_fields=["blob_prefix", "attempts", "status", "building_since"])
        store.keys.all().delete()
    if abandoned:
        removed = blobs.delete_under(abandoned)
        logger.info("encrypted store of %s: deleted %d blobs of an abandoned build", dataset_id, removed)
    return store


def encrypted_store_request(*, dataset_id: uuid.UUID) -> None:
    """Queues the build of a dataset's store, unless it is built already (``make run``'s demo
    builds its store in the same transaction as the ingest)."""
    store = selectors.encrypted_store_get(dataset_id=dataset_id)
    if store is None or store.status != EncryptedStore.Status.READY:
        tasking.enqueue(BUILD_TASK, str(dataset_id))


def encrypted_stores_requeue(*, queued_for: timedelta, building_for: timedelta) -> int:
    """Re-sends the build of every store that was never started ``queued_for`` after its
    dataset appeared (the broker was away, the message was lost) or whose build started longer
    ago than any build takes (its worker died and no redelivery came). Safe to overlap with a
    late original: the claim lets one build finish and attempts are capped."""
    now = timezone.now()
    ids = selectors.datasets_awaiting_store(created_before=now - queued_for, building_before=now - building_for)
    for dataset_id in ids:
        tasking.enqueue(BUILD_TASK, str(dataset_id))
    return len(ids)


def encrypted_store_build(*, dataset_id: uuid.UUID) -> EncryptedStore | None:
    """Builds the store once: a READY store is left alone, a build that died is taken over (its
    leftovers deleted) until ``MAX_BUILD_ATTEMPTS``, then the store is FAILED."""
    store = _claim(dataset_id)
    if store is None:
        return None
    dataset = catalog_selectors.dataset_get(dataset_id=dataset_id)
    options = _options(dataset)
    try:
        key_pairs = he_keys.store_keys(rows=dataset.row_count, levels=set(options.levels.values()))
        columns = [c["name"] for c in dataset.schema]

        def batches() -> Iterator[pa.RecordBatch]:
            return dataset_batches(dataset, columns)

        layout = encrypt_columns(
            batches=batches,
            schema=dataset.schema,
            rows=dataset.row_count,
            options=options,
            keys=key_pairs,
            blob_prefix=store.blob_prefix,
        )
        counts = _cohort_counts(layout, batches())
        with transaction.atomic():
            claimed = EncryptedStore.objects.select_for_update().filter(pk=store.pk)
            if list(claimed.values_list("blob_prefix", flat=True)) != [store.blob_prefix]:
                # A later attempt claimed the store meanwhile (this one was thought dead): it owns it.
                blobs.delete_under(store.blob_prefix)
                logger.warning("encrypted store of %s: build under %s superseded", dataset_id, store.blob_prefix)
                return None
            for pair in key_pairs.values():
                keystore.keys_save(store=store, keys=pair)
            EncryptedStore.objects.filter(pk=store.pk).update(
                status=EncryptedStore.Status.READY,
                layout=layout.to_json(),
                cohort_counts=counts,
                stored_bytes=_stored_bytes(layout),
                ready_at=timezone.now(),
                error="",
            )
            # Bounds and edges estimated privately are shown to agreement holders: spent.
            privacy.loss_record_ingest(dataset=dataset, rho=layout.rho_spent)
    except DomainError as exc:
        _abandon(store, f"{exc.code}: {exc.message}")
        return None
    except Exception as exc:
        logger.exception("encrypted store of %s failed", dataset_id)
        _abandon(store, f"internal error ({type(exc).__name__})")
        raise
    store.refresh_from_db()
    return store


def _abandon(store: EncryptedStore, reason: str) -> None:
    """Deletes everything this attempt wrote (series, totals, key blobs: all under its prefix) and
    records the failure, unless a later attempt has claimed the store meanwhile."""
    blobs.delete_under(store.blob_prefix)
    failed = store.attempts >= MAX_BUILD_ATTEMPTS
    EncryptedStore.objects.filter(pk=store.pk, blob_prefix=store.blob_prefix).update(
        status=EncryptedStore.Status.FAILED if failed else EncryptedStore.Status.BUILDING, error=reason[:2000]
    )


def _stored_bytes(layout: StoreLayout) -> int:
    """Every ciphertext blob of the store: series, packs (or, before packing, totals and product totals)."""
    return sum(blobs.size(name) for name in layout.blob_names())


def _cohort_counts(layout: StoreLayout, batches: Iterator[pa.RecordBatch]) -> dict[str, Any]:
    """Exact row counts per category, per bucket and per other cell of a bucketed column (below its
    first edge, above its last, null), for the provider's own view and for refusing small cohorts
    up front. The custodian checks the encrypted counts again before it releases anything."""
    categorical = [c for c in layout.columns if c.kind == ColumnKind.CATEGORICAL]
    bucketed = [c for c in layout.columns if c.kind == ColumnKind.NUMERIC and c.bucket_edges]
    categories: dict[str, Counter[str]] = {c.name: Counter() for c in categorical}
    buckets: dict[str, np.ndarray] = {c.name: np.zeros(len(c.bucket_edges) - 1, dtype=np.int64) for c in bucketed}
    others = {c.name: {str(cell): 0 for cell in c.cells if isinstance(cell, str)} for c in bucketed}
    codes = {BELOW: BELOW_CELL, ABOVE: ABOVE_CELL, NULL: NULL_CELL}
    for batch in batches:
        for plan in categorical:
            values = batch.column(plan.name).value_counts()
            for item in values.to_pylist():
                if item["values"] is not None:
                    categories[plan.name][item["values"]] += item["counts"]
        for plan in bucketed:
            values, valid = numeric_values(batch.column(plan.name))
            index = cell_index(values, valid, plan.bucket_edges)
            buckets[plan.name] += np.bincount(index[index >= 0], minlength=len(plan.bucket_edges) - 1)
            for cell in others[plan.name]:
                others[plan.name][cell] += int((index == codes[cell]).sum())
    return {
        "categories": {name: dict(counter) for name, counter in categories.items()},
        "buckets": {name: counts.tolist() for name, counts in buckets.items()},
        "cells": others,
    }


def encrypted_store_delete(*, dataset_id: uuid.UUID) -> None:
    """Crypto-shreds a dataset's encrypted store: ciphertext blobs, public contexts and the sealed
    secret contexts with their data keys."""
    store = EncryptedStore.objects.filter(dataset_id=dataset_id).first()
    if store is None:
        return
    if store.layout:
        delete_store(StoreLayout.from_json(store.layout))
    keystore.keys_delete(store)
    if store.blob_prefix:
        blobs.delete_under(store.blob_prefix)
    data_keys = list(store.keys.values_list("data_key_id", flat=True))
    store.delete()
    DataKey.objects.filter(pk__in=data_keys).delete()
