"""The embedded broker's transport: kombu's SQLAlchemy transport, polling briskly while work flows.

A SQLite table cannot wake a waiting worker, so the worker polls it, and a job waits for a poll at
each of its steps (authorise, compute, release, settle are separate tasks). A short interval makes
the steps quick and an idle worker busy. This transport polls every ``busy_interval`` for
``busy_seconds`` after a message arrived (a job's next step is usually queued within that), and
every ``idle_interval`` otherwise, so ``make run`` is quick during a job and quiet between them.
"""

from __future__ import annotations

import time
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy

ALIASES = ("sqla", "sqlalchemy")  # the URL prefixes kombu maps to its SQLAlchemy transport


class Transport(kombu_sqlalchemy.Transport):
    idle_interval: float = 0.1
    busy_interval: float = 0.02
    busy_seconds: float = 0.5
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
