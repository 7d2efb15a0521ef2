"""Catalogue reads. Ownership filters live here, so another user's object is simply not found."""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from dataspace.accounts.models import User
from dataspace.catalog.models import Dataset, Ingest
from dataspace.errors import NotFound


def dataset_list(
    *, search: str = "", keyword: str = "", provider: str = "", file_format: str = "", owner: User | None = None
) -> QuerySet[Dataset]:
    datasets = Dataset.objects.select_related("provider", "chain_registration")
    if owner is not None:
        datasets = datasets.filter(provider=owner)
    if search:
        datasets = datasets.filter(Q(title__icontains=search) | Q(description__icontains=search))
    if keyword:
        # JSON containment is not portable to SQLite; keywords are short lists, so match on text.
        datasets = datasets.filter(keywords__icontains=f'"{keyword}"')
    if provider:
        datasets = datasets.filter(provider__username=provider)
    if file_format:
        datasets = datasets.filter(file_format=file_format)
    return datasets


def dataset_get(*, dataset_id: uuid.UUID) -> Dataset:
    dataset = Dataset.objects.select_related("provider", "chain_registration").filter(pk=dataset_id).first()
    if dataset is None:
        raise NotFound("dataset")
    return dataset


def dataset_get_owned(*, owner: User, dataset_id: uuid.UUID) -> Dataset:
    dataset = Dataset.objects.select_related("provider").filter(pk=dataset_id, provider=owner).first()
    if dataset is None:
        raise NotFound("dataset")
    return dataset


def ingest_list(*, owner: User) -> QuerySet[Ingest]:
    return Ingest.objects.filter(provider=owner)


def ingest_get_owned(*, owner: User, ingest_id: uuid.UUID) -> Ingest:
    ingest = Ingest.objects.filter(pk=ingest_id, provider=owner).first()
    if ingest is None:
        raise NotFound("ingest")
    return ingest
