"""The policies' answers to other apps' signals."""

from __future__ import annotations

import uuid
from typing import Any

from dataspace.policies import selectors


def keep_terms_of_datasets_with_offers(sender: Any, *, dataset_id: uuid.UUID, change: str, **_: Any) -> str | None:
    """A dataset with offers stays, and so do its privacy terms: consumers may hold paid
    agreements on it."""
    if not selectors.dataset_has_offers(dataset_id=dataset_id):
        return None
    if change == "delete":
        return "The dataset has offers: consumers may hold agreements on it, so it cannot be deleted."
    return "The dataset has offers: it can be declared non-personal only before its first offer."
