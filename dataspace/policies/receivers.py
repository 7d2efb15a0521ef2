"""The policies' answers to other apps' signals."""

from __future__ import annotations

import uuid
from typing import Any

from dataspace.policies import selectors


def keep_datasets_with_offers(sender: Any, *, dataset_id: uuid.UUID, **_: Any) -> str | None:
    """A dataset with offers stays: consumers may hold paid agreements on it."""
    if selectors.dataset_has_offers(dataset_id=dataset_id):
        return "The dataset has offers: consumers may hold agreements on it, so it cannot be deleted."
    return None
