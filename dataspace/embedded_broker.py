"""The embedded broker's transport: kombu's SQLAlchemy transport on a SQLite file in WAL mode,
polling briskly while work flows.

A SQLite table cannot wake a waiting worker, so the worker polls it, and a job waits for a poll at
each of its steps (authorise, compute, release, settle are separate tasks). A short interval makes
the steps quick and an idle worker busy. This transport polls every ``busy_interval`` for
``busy_seconds`` after a message arrived (a job's next step is usually queued within that), and
every ``idle_interval`` otherwise, so ``make run`` is quick during a job and quiet between them.

The file is kept in WAL mode with synchronous=NORMAL: a send commits without the rollback
journal's fsyncs (2.3 -> 1.1 ms a send here) and the worker's polling reads no longer hold a send
back. NORMAL may lose the last sends on a power cut, never on a process crash; every step's
sweeper sends waiting work again (dataspace/tasking.py), so a lost message is a late one, not a
lost step.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine

ALIASES = ("sqla", "sqlalchemy")  # the URL prefixes kombu maps to its SQLAlchemy transport


def _wal_journal(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        # Kept in the file, so a no-op once set. Where it cannot be set (a lock held past the busy
        # timeout) the file keeps the rollback journal and full syncs: slower, still correct.
        (mode,) = cursor.execute("PRAGMA journal_mode=WAL").fetchone()
        if str(mode).lower() == "wal":
            cursor.execute("PRAGMA synchronous=NORMAL")  # this connection's
    except sqlite3.OperationalError:
        pass
    finally:
        cursor.close()


class Channel(kombu_sqlalchemy.Channel):
    def _engine_from_config(self) -> Engine:
        engine: Engine = super()._engine_from_config()
        event.listen(engine, "connect", _wal_journal)  # this broker's engine only
        return engine


class Transport(kombu_sqlalchemy.Transport):
    Channel = Channel
    idle_interval: float = 0.1
    busy_interval: float = 0.02
    busy_seconds: float = 0.5
    wait_slice: float = 0.25
    _last_message: float = float("-inf")

    # kombu reads ``polling_interval`` once per wait for messages (a Celery worker's wait lasts up
    # to 2 s); ``drain_events`` cuts a wait at the busy window's end, so each part polls at its own.
    @property
    def polling_interval(self) -> float:
        busy = time.monotonic() - self._last_message < self.busy_seconds
        return self.busy_interval if busy else self.idle_interval

    @polling_interval.setter
    def polling_interval(self, seconds: float) -> None:  # kombu's transport_options.polling_interval
        self.idle_interval = seconds

    def drain_events(self, connection: Any, timeout: float | None = None, **_: Any) -> None:
        if timeout is not None:
            # A Celery worker waits 2 s at a time and looks whether it should stop between waits:
            # shorter waits let a stopping worker go within a wait slice instead of up to 2 s.
            timeout = min(timeout, self.wait_slice)
        started = time.monotonic()
        busy_rest = self._last_message + self.busy_seconds - started
        if busy_rest > 0 and (timeout is None or busy_rest < timeout):
            try:
                super().drain_events(connection, timeout=busy_rest)
                return
            except TimeoutError:  # kombu raises socket.timeout, its alias
                pass  # the window ended without a message: wait out the rest at the idle interval
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - started))
        super().drain_events(connection, timeout=timeout)

    def _deliver(self, message: Any, queue: str | None) -> None:
        self._last_message = time.monotonic()
        super()._deliver(message, queue)


def install(*, idle_interval: float, busy_interval: float, busy_seconds: float) -> None:
    """Points kombu's ``sqla+`` URLs at this transport (through kombu's alias table, the way a
    transport is registered), with the given intervals. Called before any connection is made."""
    Transport.idle_interval = idle_interval
    Transport.busy_interval = busy_interval
    Transport.busy_seconds = busy_seconds
    for alias in ALIASES:
        TRANSPORT_ALIASES[alias] = f"{__name__}:Transport"
