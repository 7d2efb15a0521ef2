from __future__ import annotations

from dataspace.accounts.models import User
from dataspace.catalog import services
from dataspace.catalog.models import Dataset
from dataspace.catalog.uploads import seal_chunks


def ready_dataset(provider: User, content: bytes, *, title: str = "d", name: str = "d.csv", **meta: object) -> Dataset:
    """A dataset through the same services the API uses, with the ingest run in-process."""
    ingest = services.ingest_start(
        provider=provider,
        upload=seal_chunks([content], name=name),
        metadata=services.DatasetMetadata(title=title, **meta),  # type: ignore[arg-type]
    )
    dataset = services.ingest_run(ingest_id=ingest.id)
    assert dataset is not None
    return dataset
