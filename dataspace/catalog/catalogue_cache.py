"""The catalogue's reads, served from memory while the catalogue is unchanged.

A catalogue read is mostly Django's own work (building two queries, serialising every dataset's
profile); its answer changes only when a dataset or its on-chain registration does. Each read asks
the database one cheap aggregate, the catalogue's *state*, and reuses the rendered answer stored
under that state, so a change is visible to the very next read in every process: nothing has to
be invalidated, and no process can serve another's stale copy.

The state covers what a catalogue answer shows: the datasets (their number and latest
``updated_at``; every dataset change goes through ``save()``) and their registration writes
(the newest write, and how many writes are in each status and mined). The outbox moves a write's
status with ``update()``, which does not touch ``updated_at``, hence the status histogram. Two
writes trading statuses in the same instant would keep the histogram; entries expire after
``CATALOGUE_CACHE_SECONDS`` so even that is seen within seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from dataspace.catalog.models import Dataset
from dataspace.chain.models import ChainTransaction

_STATUS_WEIGHTS = {status: 1 << (12 * i) for i, status in enumerate(ChainTransaction.Status)}


def _state_sql() -> str:
    datasets, writes = Dataset._meta.db_table, ChainTransaction._meta.db_table
    registration = Dataset._meta.get_field("chain_registration").column
    histogram = " ".join(f"WHEN '{status}' THEN {weight}" for status, weight in _STATUS_WEIGHTS.items())
    # Built once at import from model metadata and the status enum: nothing in it comes from a
    # request. A raw aggregate, because the ORM's query building would cost as much as it saves.
    return (
        f"SELECT COUNT(*), MAX(d.updated_at), MAX(w.id), SUM(CASE w.status {histogram} ELSE 0 END), "  # noqa: S608
        f"COUNT(w.block_number) FROM {datasets} d LEFT JOIN {writes} w ON w.id = d.{registration}"
    )


_STATE_SQL = _state_sql()


def catalogue_state() -> str:
    """One line that changes whenever any catalogue answer would."""
    with connection.cursor() as cursor:
        cursor.execute(_STATE_SQL)
        row = cursor.fetchone()
    return "|".join(str(value) for value in row)


def cached_json(request: Request, build: Callable[[], Any], *, per_user: bool) -> HttpResponse:
    """The JSON answer to ``request``: rendered once per catalogue state, then read from memory.
    ``per_user``: the answer depends on who asks (their own datasets), so each user has their own
    entry. The absolute URI is part of the key because pagination links carry the host."""
    who = f"user:{request.user.pk}" if per_user else "anyone"
    key = hashlib.blake2b(f"{catalogue_state()}|{who}|{request.build_absolute_uri()}".encode()).hexdigest()
    cache = caches["catalogue"]
    body = cache.get(key)
    if body is None:
        body = JSONRenderer().render(build())
        cache.set(key, body, timeout=settings.CATALOGUE_CACHE_SECONDS)
    return HttpResponse(body, content_type="application/json")
