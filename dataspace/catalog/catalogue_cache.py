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
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from dataspace.catalog.models import Dataset
from dataspace.chain.models import ChainTransaction
from dataspace.postgres.cursors import prepared_cursor

_STATUS_WEIGHTS = {status: 1 << (12 * i) for i, status in enumerate(ChainTransaction.Status)}


def _state_sql() -> str:
    datasets, writes = Dataset._meta.db_table, ChainTransaction._meta.db_table
    registration = Dataset._meta.get_field("chain_registration").column
    histogram = " ".join(f"WHEN '{status}' THEN {weight}" for status, weight in _STATUS_WEIGHTS.items())
    # Built once at import from model metadata and the status enum: nothing in it comes from a
    # request. A raw aggregate, because the ORM's query building would cost as much as it saves.
    return (
        f"SELECT COUNT(*) AS datasets, MAX(d.updated_at) AS updated, MAX(w.id) AS newest_write, "  # noqa: S608
        f"SUM(CASE w.status {histogram} ELSE 0 END) AS write_statuses, COUNT(w.block_number) AS mined "
        f"FROM {datasets} d LEFT JOIN {writes} w ON w.id = d.{registration}"
    )


STATE_SQL = _state_sql()
# Where a token check that read the state in its own statement leaves it for the view.
_STATE_ATTRIBUTE = "redlake_catalogue_state"


def _state_line(row: Sequence[Any]) -> str:
    return "|".join(str(value) for value in row)


def catalogue_state() -> str:
    """One line that changes whenever any catalogue answer would."""
    with prepared_cursor(connection) as cursor:
        cursor.execute(STATE_SQL)
        row = cursor.fetchone()
    return _state_line(row)


# For the catalogue's views: their API token check reads the catalogue's state in the same
# statement (``ReadsAlongsideToken``), so a cached read costs one round trip to the database, not
# two. The state is still read within the request, so a change committed before it is seen. (A
# comment, not a docstring: the API schema would take it for the views' own description.)
class StateAlongsideToken:
    token_alongside: ClassVar[str] = STATE_SQL

    def token_alongside_read(self, request: Request, row: tuple[Any, ...]) -> None:
        setattr(request._request, _STATE_ATTRIBUTE, _state_line(row))


def _request_state(request: Request) -> str:
    """The state read with this request's token, or (a session, no token) read now."""
    state = getattr(request._request, _STATE_ATTRIBUTE, None)
    return state if isinstance(state, str) else catalogue_state()


def cached_json(request: Request, build: Callable[[], Any], *, per_user: bool) -> HttpResponse:
    """The JSON answer to ``request``: rendered once per catalogue state, then read from memory.
    ``per_user``: the answer depends on who asks (their own datasets), so each user has their own
    entry. The absolute URI is part of the key because pagination links carry the host."""
    who = f"user:{request.user.pk}" if per_user else "anyone"
    key = hashlib.blake2b(f"{_request_state(request)}|{who}|{request.build_absolute_uri()}".encode()).hexdigest()
    cache = caches["catalogue"]
    body = cache.get(key)
    if body is None:
        body = JSONRenderer().render(build())
        cache.set(key, body, timeout=settings.CATALOGUE_CACHE_SECONDS)
    return HttpResponse(body, content_type="application/json")
