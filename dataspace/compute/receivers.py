"""Reactions to other apps' signals."""

from __future__ import annotations

import logging
import uuid
from typing import Any

logger = logging.getLogger(__name__)


def delete_encrypted_store(sender: Any, *, dataset_id: uuid.UUID, **_: Any) -> None:
    from dataspace.compute.stores import store_delete

    store_delete(dataset_id=dataset_id)


def build_encrypted_store(sender: Any, *, dataset_id: uuid.UUID, **_: Any) -> None:
    from dataspace.compute.tasks import build_encrypted_store as task

    try:
        task.delay(str(dataset_id))
    except Exception as exc:  # broker away: the sweeper builds it later
        logger.warning("could not queue the encrypted store of %s (%s)", dataset_id, type(exc).__name__)
