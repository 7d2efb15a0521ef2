"""The privacy app's answers to the catalogue's signals."""

from __future__ import annotations

import uuid
from typing import Any

from dataspace.privacy import onchain


def pin_dataset_terms(sender: Any, *, dataset_id: uuid.UUID, **_: Any) -> None:
    # A new dataset, or terms that changed: the chain is told once the registration is confirmed.
    onchain.terms_sync_request(dataset_id=dataset_id)
