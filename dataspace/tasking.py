"""Handing work to Celery: the one way services queue a task, and the one way a task retries.

Invariants kept here:
- work is queued only after the transaction that makes it necessary commits, so a worker never
  looks for a row that is not there yet;
- a broker that cannot take the message never fails the service: the send is logged and the
  row stays in its waiting state, where the step's sweeper (a beat entry) finds it and sends it
  again. Every step is idempotent, so a late original and a sweeper's copy are harmless;
- tasks are named, not imported: services never import the tasks that call them, so imports
  run one way (tasks -> services). A unit test checks every name used here is a registered task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import OperationalError, transaction

from dataspace.errors import AttemptFailed, TransientError

logger = logging.getLogger(__name__)
RETRY_SOON_SECONDS = 2


def enqueue(task_name: str, *args: Any, countdown: float | None = None) -> bool:
    """Sends ``task_name(*args)`` now (to run at once, or ``countdown`` seconds from now); False
    (and a log line) when the broker cannot take it."""
    try:
        current_app.send_task(task_name, args=list(args), countdown=countdown)
    except Exception as exc:  # kombu raises many types for "no broker there"; the sweeper resends
        logger.warning("could not queue %s%s (%s); its sweeper will", task_name, tuple(args), type(exc).__name__)
        return False
    return True


def load_transport() -> None:
    """Imports this process's broker transport now, without connecting (the web tier calls it as
    a process starts): the first request that queues a task then does not pay for the import,
    ~0.45 s on the embedded broker, SQLAlchemy's most of it. Nothing here waits on the broker."""
    with current_app.connection_for_write() as connection:
        connection.transport  # noqa: B018 - building the transport object imports its module


def connect_ahead() -> None:
    """Does now what this process's first send would pay for before its message (a worker process
    calls it on its warm-up thread, a web process as gunicorn starts it): the result backend's
    class (found through package entry points), a broker connection for its task producer, and
    the queues its tasks are routed to declared on that connection (a new table row each on the
    embedded broker). ~0.13 s of a first send on the embedded broker, ~40 ms on Redis. A broker
    that is away is left to the first send, which handles it as always."""
    try:
        current_app.backend  # noqa: B018 - the property loads and builds the backend
        with current_app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=1)
            queues = current_app.amqp.queues
            for name in routed_queues():
                # A queue the mapping lacks is made aside: queues[name] would add it to the mapping
                # a starting worker's consumer iterates meanwhile (it failed to start on that).
                producer.maybe_declare(queues[name] if name in queues else queues.new_missing(name))
    except Exception as exc:
        logger.info("the broker connection was not opened ahead (%s); the first send will", type(exc).__name__)


def routed_queues() -> list[str]:
    """The queues tasks are sent to: the default one and every route's."""
    routes = settings.CELERY_TASK_ROUTES.values()
    return sorted({current_app.conf.task_default_queue, *(route["queue"] for route in routes)})


def enqueue_on_commit(task_name: str, *args: Any, countdown: float | None = None) -> None:
    """Sends ``task_name(*args)`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: enqueue(task_name, *args, countdown=countdown))


def backoff_seconds(retries: int) -> int:
    """1, 2, 4 ... 30 s: long enough not to hammer a node that is away, short enough to notice
    it is back."""
    return int(min(30, 2 ** min(retries, 5)))


def run_step(task: Any, step: Callable[[], bool | None]) -> None:
    """Runs one idempotent step of a flow from inside a bound task.

    ``step`` returns True (or None) when it is done and False while it waits on something that
    will come (a chain write on its way): the task looks again after ``CHAIN_POLL_SECONDS``. A
    ``TransientError`` or a database that is away is retried with backoff; ``AttemptFailed``
    (a bounded piece of work failed and may be tried again) soon. After the task's last retry
    the step's sweeper keeps the work moving.
    """
    try:
        done = step()
    except (TransientError, OperationalError) as exc:
        raise task.retry(countdown=backoff_seconds(task.request.retries), exc=exc) from None
    except AttemptFailed as exc:
        raise task.retry(countdown=RETRY_SOON_SECONDS, exc=exc) from None
    if done is False:
        raise task.retry(countdown=settings.CHAIN_POLL_SECONDS)
