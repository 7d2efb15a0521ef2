"""The compute app's answers to the catalogue's signals."""

from __future__ import annotations

import uuid
from typing import Any

from dataspace.compute import receipts, stores


def build_encrypted_store(sender: Any, *, dataset_id: uuid.UUID, **_: Any) -> None:
    # Queued once the dataset exists; if the broker is away, the stores' sweeper sends it later.
    stores.encrypted_store_request(dataset_id=dataset_id)


def delete_encrypted_store(sender: Any, *, dataset_id: uuid.UUID, **_: Any) -> None:
    stores.encrypted_store_delete(dataset_id=dataset_id)


def custodian_receipt_address(sender: Any, **_: Any) -> str | None:
    """The receipt key's address, for the deploy to register on chain; None where this process
    may not hold the receipt key (any role but the custodian's, in production)."""
    try:
        return receipts.custodian().address
    except Exception:  # a role without the receipt keyring: the deploy is given the address
        return None
