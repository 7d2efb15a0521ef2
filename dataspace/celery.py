"""The Celery application. Tasks live in each app's ``tasks.py`` and call services."""

import os
import sqlite3
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dataspace.settings")

app = Celery("dataspace")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _tune_embedded_broker(**_: object) -> None:
    # kombu's SQLAlchemy transport polls its table once a second by default, which makes every
    # task wait ~1 s on the embedded broker. Passing polling_interval through
    # broker_transport_options crashes (kombu hands it to create_engine), so the intervals are
    # the transport class's (dataspace/embedded_broker.py: brisk while work flows, else idle).
    from django.conf import settings

    if str(settings.CELERY_BROKER_URL).startswith("sqla+"):
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        from dataspace import embedded_broker

        embedded_broker.install(
            idle_interval=settings.EMBEDDED_BROKER_POLLING_INTERVAL,
            busy_interval=settings.EMBEDDED_BROKER_BUSY_POLLING_INTERVAL,
            busy_seconds=settings.EMBEDDED_BROKER_BUSY_SECONDS,
        )
        # kombu makes its engine itself; SQLAlchemy's class-level event reaches it. The only
        # engines in a Redlake process are kombu's (Django has its own database layer).
        if not event.contains(Engine, "connect", _embedded_broker_journal):
            event.listen(Engine, "connect", _embedded_broker_journal)


def _embedded_broker_journal(dbapi_connection: Any, _record: Any) -> None:
    """ISSUE-14: the embedded broker's SQLite file in WAL mode, synchronous=NORMAL: a send commits
    without the rollback journal's fsyncs (2.3 -> 1.1 ms a send here) and the worker's polling
    reads no longer hold a send back. NORMAL may lose the last sends on a power cut, never on a
    process crash; every step's sweeper sends waiting work again (dataspace/tasking.py), so a
    lost message is a late one, not a lost step."""
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


# ISSUE-14: connected strongly. Signals hold weak references by default, and the lambda this used
# to connect was collected at once, so the embedded broker kept its 1 s poll (a second per step).
app.on_configure.connect(_tune_embedded_broker, weak=False)
app.autodiscover_tasks()


# ISSUE-14: workers log through Django's LOGGING (JSON lines), not Celery's own format, and each
# task's lines carry its ids and the id of the request that queued it.
@signals.setup_logging.connect
def _use_django_logging(**_: Any) -> None:
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@signals.before_task_publish.connect
def _pass_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    from dataspace.observability.logs import current_request_id

    request_id = current_request_id()
    if headers is not None and request_id:
        headers["redlake_request_id"] = request_id


@signals.task_prerun.connect
def _bind_task_ids(task_id: str = "", task: Any = None, args: Any = None, **_: Any) -> None:
    from dataspace.observability.logs import bind_task_context

    request_id = getattr(task.request, "redlake_request_id", None) if task is not None else None
    bind_task_context(task=task, task_id=task_id, args=args, request_id=request_id)


# ISSUE-14 (found by tests/faults): unbound after the task, or a Redis restart's "connection to
# broker lost" lines carried the ids of whichever job the worker ran last.
@signals.task_postrun.connect
def _unbind_task_ids(**_: Any) -> None:
    from dataspace.observability.logs import unbind_task_context

    unbind_task_context()


# ISSUE-13: a tee worker refuses the queue on a host that cannot sandbox, and keeps warm sandboxes.
@signals.worker_init.connect
def _tee_worker_init(sender: Any = None, **kwargs: Any) -> None:
    from dataspace.compute import tee_worker

    tee_worker.on_worker_init(sender=sender, **kwargs)


@signals.worker_process_init.connect
def _tee_process_init(**kwargs: Any) -> None:
    from dataspace.compute import tee_worker

    tee_worker.on_process_init(**kwargs)


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _tee_shutdown(**kwargs: Any) -> None:
    from dataspace.compute import tee_worker

    tee_worker.on_shutdown(**kwargs)
