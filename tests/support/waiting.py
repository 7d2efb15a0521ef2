"""Waiting on conditions, never on the clock: every wait names what it waits for and gives up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dataspace.catalog.models import Ingest


def wait_for(predicate: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.1) -> Any:
    """The first truthy value of ``predicate``, polled every ``interval`` for up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def wait_for_ingest(ingest_id: str, *, timeout: float = 120.0) -> Ingest:
    def finished() -> Ingest | None:
        ingest = Ingest.objects.get(pk=ingest_id)
        return ingest if ingest.status in {Ingest.Status.SUCCEEDED, Ingest.Status.FAILED} else None

    result: Ingest = wait_for(finished, timeout=timeout)
    return result
