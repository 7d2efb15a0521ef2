"""The compute app's answers to the catalogue's signals."""

from __future__ import annotations

import uuid
from typing import Any

from dataspace.compute import stores


def build_encrypted_store(sender: Any, *, dataset_id: uuid.UUID, **_: Any) -> None:
    # Queued once the dataset exists; if the broker is away, the stores' sweeper sends it later.
    stores.encrypted_store_request(dataset_id=dataset_id)


def delete_encrypted_store(sender: Any, *, dataset_id: uuid.UUID, **_: Any) -> None:
    stores.encrypted_store_delete(dataset_id=dataset_id)
