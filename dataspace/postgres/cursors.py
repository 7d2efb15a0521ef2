"""A cursor for the few statements that run on every request, prepared where the database can."""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper


def prepared_cursor(db: BaseDatabaseWrapper) -> CursorWrapper:
    """On PostgreSQL (``dataspace.postgres``), a cursor whose statements the server plans once per
    connection; elsewhere (SQLite plans cheaply in process), an ordinary cursor. Statements sent
    through it must be built from code, never from request data: each distinct text is kept."""
    prepared = getattr(db, "prepared_cursor", None)
    return prepared() if prepared is not None else db.cursor()
