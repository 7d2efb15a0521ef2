"""Catalogue services: starting and running ingests, editing and removing datasets.

Invariant kept here: a dataset's content exists only as a sealed blob; every path that fails
leaves no blob, no data key and no dataset behind.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from dataspace import tasking
from dataspace.accounts import selectors as accounts_selectors
from dataspace.accounts import services as accounts_services
from dataspace.accounts.models import User
from dataspace.canonical import canonical_json_ascii
from dataspace.catalog import onchain
from dataspace.catalog.models import Dataset, Ingest
from dataspace.catalog.profiling import (
    ColumnType,
    IngestError,
    TableProfile,
    check_column_types,
    check_head,
    profile_table,
)
from dataspace.catalog.signals import dataset_change_check, dataset_deleting, dataset_ingested, dataset_privacy_changed
from dataspace.catalog.uploads import SealedUpload
from dataspace.chain.agents import DatasetRegistryAgent
from dataspace.errors import DomainError, ErrorCode
from dataspace.vault import services as vault
from dataspace.vault.models import DataKey

logger = logging.getLogger(__name__)

MAX_INGEST_ATTEMPTS = 3
INGEST_TASK = "dataspace.catalog.tasks.ingest_dataset"
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class DatasetMetadata:
    title: str
    description: str = ""
    keywords: list[str] = field(default_factory=list)
    licence: str = ""
    public_value_columns: list[str] = field(default_factory=list)
    # How the encrypted column store is built: {"sums_only": [columns], "buckets": {column: [edges]},
    # "bounds": {column: [lo, hi]}}.
    encryption: dict[str, Any] = field(default_factory=dict)
    # No row describes a person: no noise, no privacy budget (see Dataset.non_personal).
    non_personal: bool = False
    # The total epsilon the dataset allows (ignored when non-personal); None: the space's default.
    privacy_epsilon: float | None = None
    # ISSUE-15: the provider's corrections of inferred column types, {column: type}.
    column_types: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "non_personal": self.non_personal,
            "privacy_epsilon": self.privacy_epsilon,
            "encryption": self.encryption,
            "title": self.title,
            "description": self.description,
            "keywords": self.keywords,
            "licence": self.licence,
            "public_value_columns": self.public_value_columns,
            "column_types": self.column_types,  # ISSUE-15
        }


def detect_format(*, file_name: str, declared: str | None) -> str:
    if declared:
        if declared not in {"csv", "parquet"}:
            raise IngestError("The format must be 'csv' or 'parquet'.", code=ErrorCode.UNSUPPORTED_FORMAT)
        return declared
    suffix = PurePosixPath(file_name.lower()).suffix
    if suffix not in FORMATS:
        raise IngestError("Upload a .csv or .parquet file, or name the format.", code=ErrorCode.UNSUPPORTED_FORMAT)
    return FORMATS[suffix]


def ingest_start(
    *,
    provider: User,
    upload: SealedUpload,
    metadata: DatasetMetadata,
    file_format: str | None = None,
    delimiter: str = ",",
) -> Ingest:
    """Checks the head of a sealed upload while the uploader waits, then queues the full ingest.

    On any failure the sealed upload is deleted before the error propagates.
    """
    try:
        fmt = detect_format(file_name=upload.name or "", declared=file_format)
        if upload.size == 0:
            raise IngestError("The file is empty.", code=ErrorCode.FILE_EMPTY)
        with vault.blob_open(blob_name=upload.blob_name, key=upload.data_key.plaintext) as reader:
            columns = check_head(io.BufferedReader(reader), file_format=fmt, size=reader.size, delimiter=delimiter)
        # ISSUE-15: corrected types are checked against the head's columns and count for bounds.
        check_column_types(metadata.column_types, list(columns))
        columns = {**columns, **metadata.column_types}
        _check_bounds_columns(metadata.encryption.get("bounds") or {}, columns)
        with transaction.atomic():
            data_key = vault.data_key_save(new_key=upload.data_key, purpose="dataset")
            ingest = Ingest.objects.create(
                provider=provider,
                file_name=(upload.name or "upload")[:255],
                file_format=fmt,
                delimiter=delimiter,
                size_bytes=upload.size or 0,
                content_sha256=upload.sha256,
                blob_name=upload.blob_name,
                data_key=data_key,
                metadata=metadata.as_dict(),
            )
    except BaseException:
        upload.discard()
        raise
    # From here the ingest row owns the sealed upload; a broker outage only delays it.
    upload.claimed = True
    tasking.enqueue_on_commit(INGEST_TASK, str(ingest.id))
    return ingest


_NUMERIC = {ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN}


def _check_bounds_columns(bounds: dict[str, Any], columns: dict[str, str | None]) -> None:
    """Declared bounds name numeric columns of the file, as far as its head shows their type (a
    column the full pass finds to be text is not encrypted as a number, and its bounds are dropped)."""
    for column in bounds:
        if column not in columns or (columns[column] is not None and columns[column] not in _NUMERIC):
            raise DomainError(
                f"Bounds are declared for {column!r}, which is not a numeric column of the file.",
                code=ErrorCode.BOUNDS_COLUMN_UNKNOWN,
                details={"column": column},
            )


def ingest_requeue_stale(*, queued_for: timedelta, running_for: timedelta) -> int:
    """Re-sends ingests whose message was lost (queued too long) or whose worker died (running
    longer than any ingest takes). Safe to overlap with a late original: the claim lets one run,
    and attempts are capped."""
    now = timezone.now()
    stale = Ingest.objects.filter(
        Q(status=Ingest.Status.QUEUED, created_at__lt=now - queued_for)
        | Q(status=Ingest.Status.RUNNING, started_at__lt=now - running_for)
    )
    ids = list(stale.values_list("id", flat=True)[:500])
    for ingest_id in ids:
        tasking.enqueue(INGEST_TASK, str(ingest_id))
    return len(ids)


def _claim(ingest_id: uuid.UUID) -> Ingest | None:
    """Moves an ingest to RUNNING exactly once per delivery; a redelivery after a worker died
    takes it over while attempts remain."""
    ingest = Ingest.objects.filter(pk=ingest_id).first()
    if ingest is None or ingest.status not in {Ingest.Status.QUEUED, Ingest.Status.RUNNING}:
        return None
    claimed = Ingest.objects.filter(pk=ingest_id, status=ingest.status, attempts=ingest.attempts).update(
        status=Ingest.Status.RUNNING, attempts=F("attempts") + 1, started_at=timezone.now()
    )
    if not claimed:
        return None
    ingest.refresh_from_db()
    return ingest


def _fail(ingest: Ingest, *, code: ErrorCode, message: str) -> None:
    if ingest.blob_name:
        vault.blob_delete(ingest.blob_name)
    data_key_id = ingest.data_key_id
    with transaction.atomic():
        Ingest.objects.filter(pk=ingest.pk).update(
            status=Ingest.Status.FAILED,
            error_code=code,
            error_message=message,
            blob_name="",
            data_key=None,
            finished_at=timezone.now(),
        )
        if data_key_id is not None:
            DataKey.objects.filter(pk=data_key_id).delete()


class _ProgressRecorder:
    """Writes progress at most every 2 percent and every half second: polling stays live without
    a database write per batch."""

    def __init__(self, ingest_id: uuid.UUID):
        self._ingest_id = ingest_id
        self._last_percent = 0
        self._last_write = 0.0

    def __call__(self, fraction: float) -> None:
        percent = min(99, int(fraction * 100))
        now = time.monotonic()
        if percent >= self._last_percent + 2 and now - self._last_write >= 0.5:
            Ingest.objects.filter(pk=self._ingest_id, status=Ingest.Status.RUNNING).update(progress=percent)
            self._last_percent, self._last_write = percent, now


def ingest_run(*, ingest_id: uuid.UUID) -> Dataset | None:
    """Validates and profiles the whole sealed upload, then creates the dataset.

    Idempotent: an ingest that already finished is left alone; one whose worker died is taken
    over until ``MAX_INGEST_ATTEMPTS``, then failed.
    """
    ingest = _claim(ingest_id)
    if ingest is None:
        return None
    if ingest.attempts > MAX_INGEST_ATTEMPTS:
        _fail(
            ingest, code=ErrorCode.INGEST_ABANDONED, message=f"Ingest failed {MAX_INGEST_ATTEMPTS} times; upload again."
        )
        return None
    assert ingest.data_key is not None
    try:
        key = vault.data_key_unwrap(ingest.data_key)
        with vault.blob_open(blob_name=ingest.blob_name, key=key) as reader:
            profile = profile_table(
                io.BufferedReader(reader, buffer_size=1 << 20),
                file_format=ingest.file_format,
                size=reader.size,
                delimiter=ingest.delimiter,
                on_progress=_ProgressRecorder(ingest.id),
                column_types=ingest.metadata.get("column_types") or {},  # ISSUE-15
            )
            # Every chunk must authenticate, including ones the parser had no reason to read (a
            # Parquet reader skips around; a CSV parse reads them all, leaving nothing to do).
            reader.authenticate_unread()
    except DomainError as exc:
        logger.info("ingest %s failed: %s", ingest.id, exc.code)
        _fail(ingest, code=exc.code, message=exc.message)
        return None
    return _dataset_create(ingest=ingest, profile=profile)


@transaction.atomic
def _dataset_create(*, ingest: Ingest, profile: TableProfile) -> Dataset:
    assert ingest.data_key is not None
    meta = ingest.metadata
    categorical = {c.name for c in profile.columns if c.type == ColumnType.CATEGORICAL}
    dataset = Dataset.objects.create(
        provider=ingest.provider,
        title=meta["title"],
        description=meta.get("description", ""),
        keywords=meta.get("keywords", []),
        licence=meta.get("licence", ""),
        public_value_columns=[c for c in meta.get("public_value_columns", []) if c in categorical],
        non_personal=bool(meta.get("non_personal", False)),
        privacy_epsilon=0.0
        if meta.get("non_personal")
        else float(meta.get("privacy_epsilon") or settings.PRIVACY_DEFAULT_DATASET_EPSILON),
        file_format=ingest.file_format,
        schema=[c.as_dict() for c in profile.columns],
        row_count=profile.rows,
        size_bytes=ingest.size_bytes,
        content_sha256=ingest.content_sha256,
        blob_name=ingest.blob_name,
        data_key=ingest.data_key,
    )
    Ingest.objects.filter(pk=ingest.pk).update(
        status=Ingest.Status.SUCCEEDED, progress=100, dataset=dataset, finished_at=timezone.now()
    )
    # ISSUE-12 custody: the registration is signed with the provider's custodial key, which only
    # the chain signer holds: queue it there rather than signing in the ingest worker.
    tasking.enqueue_on_commit("dataspace.catalog.tasks.register_datasets_on_chain")
    transaction.on_commit(lambda: dataset_ingested.send(sender=Dataset, dataset_id=dataset.id))
    return dataset


def dataset_metadata_hash(dataset: Dataset) -> bytes:
    """SHA-256 of the dataset's canonical metadata (what the chain pins; timestamps excluded)."""
    document = {
        "id": str(dataset.id),
        "title": dataset.title,
        "description": dataset.description,
        "keywords": dataset.keywords,
        "licence": dataset.licence,
        "format": dataset.file_format,
        "columns": [[c["name"], c["type"]] for c in dataset.schema],
    }
    return hashlib.sha256(canonical_json_ascii(document)).digest()


def dataset_register_on_chain(*, dataset_id: uuid.UUID) -> bool:
    """Queues the dataset's registration (provider, metadata hash, content SHA-256) through the
    outbox. Providers with a custodial wallet are registered with a signature made here; one
    with their own address must sign themselves (not yet offered). Never raises: the periodic
    sweep retries datasets still unregistered."""
    dataset = Dataset.objects.select_related("provider").filter(pk=dataset_id, chain_registration=None).first()
    if dataset is None:
        return False
    wallet = accounts_selectors.wallet_get(user=dataset.provider)
    if wallet is None or wallet.kind != wallet.Kind.CUSTODIAL:
        logger.info("dataset %s waits for its provider's own signature to be registered on chain", dataset.id)
        return False
    try:
        tx = DatasetRegistryAgent().register(
            dataset_id=dataset.id,
            provider_key=accounts_services.wallet_private_key(wallet=wallet),
            metadata_hash=dataset_metadata_hash(dataset),
            content_hash=bytes.fromhex(dataset.content_sha256),
        )
    except DomainError as exc:
        logger.warning("dataset %s not yet registered on chain: %s", dataset.id, exc.code)
        return False
    Dataset.objects.filter(pk=dataset.pk).update(chain_registration=tx)
    return True


def datasets_register_pending() -> int:
    ids = list(Dataset.objects.filter(chain_registration=None).values_list("id", flat=True)[:200])
    return sum(dataset_register_on_chain(dataset_id=dataset_id) for dataset_id in ids)


def ingest_give_up(*, ingest_id: uuid.UUID, reason: str) -> None:
    """Called when the task itself can no longer run (retries exhausted)."""
    ingest = Ingest.objects.filter(pk=ingest_id, status__in=[Ingest.Status.QUEUED, Ingest.Status.RUNNING]).first()
    if ingest is not None:
        _fail(ingest, code=ErrorCode.INGEST_ABANDONED, message=reason)


def dataset_update(
    *,
    dataset: Dataset,
    title: str | None = None,
    description: str | None = None,
    keywords: list[str] | None = None,
    licence: str | None = None,
    public_value_columns: list[str] | None = None,
    non_personal: bool | None = None,
    privacy_epsilon: float | None = None,
) -> Dataset:
    """Edits the metadata. Privacy terms only move towards more use: the budget is raised, never
    lowered (what was released stays released), and a dataset is declared non-personal only
    while it has no offer, irreversibly (both are pinned on chain)."""
    privacy_changed = False
    if non_personal is not None and non_personal != dataset.non_personal:
        if not non_personal:
            raise DomainError(
                "A dataset declared non-personal stays so (the chain pins it).", code=ErrorCode.PRIVACY_TERMS_LOCKED
            )
        _check_change(dataset, "declare_non_personal", ErrorCode.PRIVACY_TERMS_LOCKED)
        dataset.non_personal, dataset.privacy_epsilon, privacy_changed = True, 0.0, True
    if privacy_epsilon is not None and privacy_epsilon != dataset.privacy_epsilon:
        if dataset.non_personal:
            raise DomainError("A non-personal dataset has no privacy budget.", code=ErrorCode.PRIVACY_TERMS_LOCKED)
        if privacy_epsilon < dataset.privacy_epsilon:
            raise DomainError(
                f"The privacy budget can be raised, not lowered (it is {dataset.privacy_epsilon:g}).",
                code=ErrorCode.PRIVACY_TERMS_LOCKED,
            )
        dataset.privacy_epsilon, privacy_changed = privacy_epsilon, True
    if public_value_columns is not None:
        categorical = {c["name"] for c in dataset.schema if c["type"] == ColumnType.CATEGORICAL}
        unknown = sorted(set(public_value_columns) - categorical)
        if unknown:
            raise DomainError(
                "Only categorical columns can show their values.", details={"public_value_columns": unknown}
            )
        dataset.public_value_columns = public_value_columns
    hash_before = dataset_metadata_hash(dataset)
    for name, value in (("title", title), ("description", description), ("keywords", keywords), ("licence", licence)):
        if value is not None:
            setattr(dataset, name, value)
    with transaction.atomic():
        dataset.save()
        if dataset_metadata_hash(dataset) != hash_before:
            # The registry pins the metadata hash: the edit goes to the chain (updateFor).
            onchain.metadata_sync_request_on_commit(dataset_id=dataset.id)
        if privacy_changed:
            transaction.on_commit(lambda: dataset_privacy_changed.send(sender=Dataset, dataset_id=dataset.id))
    return dataset


def _check_change(dataset: Dataset, change: str, code: ErrorCode) -> None:
    sent = dataset_change_check.send(sender=Dataset, dataset_id=dataset.id, change=change)
    reasons = [reason for _, reason in sent if reason]
    if reasons:
        raise DomainError(" ".join(reasons), code=code)


def dataset_delete(*, dataset: Dataset) -> None:
    """Removes a dataset and crypto-shreds its content: without the data key the blob is noise.
    Any app may keep it (``dataset_change_check``): the policies do while it has offers."""
    _check_change(dataset, "delete", ErrorCode.CONFLICT)
    blob_name, data_key_id = dataset.blob_name, dataset.data_key_id
    with transaction.atomic():
        # The row lock comes before the deletion gathers what refers to the dataset: a row another
        # transaction adds meanwhile (a worker pinning its privacy terms makes its budget row)
        # waits for this deletion and then finds the dataset gone, instead of slipping in after
        # the gathering and failing this deletion at commit.
        Dataset.objects.select_for_update().filter(pk=dataset.pk).exists()
        if dataset.chain_registration_id is not None:
            # Registered (or on its way): the registry retires it too (retireFor), found again by
            # the sweeper from the platform's registrations if this message is lost.
            provider = accounts_selectors.wallet_address(user_id=dataset.provider_id)
            onchain.retire_request_on_commit(dataset_id=dataset.id, provider=provider)
        dataset_deleting.send(sender=Dataset, dataset_id=dataset.id)
        Ingest.objects.filter(dataset=dataset).update(dataset=None)
        dataset.delete()
        DataKey.objects.filter(pk=data_key_id).delete()
    vault.blob_delete(blob_name)
