"""The Celery application. Tasks live in each app's ``tasks.py`` and call services."""

import os
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
        from dataspace import embedded_broker

        embedded_broker.install(
            idle_interval=settings.EMBEDDED_BROKER_POLLING_INTERVAL,
            busy_interval=settings.EMBEDDED_BROKER_BUSY_POLLING_INTERVAL,
            busy_seconds=settings.EMBEDDED_BROKER_BUSY_SECONDS,
        )


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


# ISSUE-14: a worker process opens its keyrings (~85 ms per RSA key, checked as it loads) and its
# broker connection for publishing as it starts, not during its first job: a newcomer's first job
# on `make run` took ~1 s against ~0.25 s for the next ones. On a thread: the process takes tasks
# meanwhile (and Celery gives this signal's handlers 4 s), and a task that needs a keyring being
# opened waits for that load. A pool process ends with os._exit, so the thread cannot hold up its
# exit; the solo pool's process may, for the second the warm-up takes. Then the CKKS contexts of
# the dataset most likely next (compute/warm_up.py): its public context took ~0.13 s of a first job.
@signals.worker_process_init.connect
def _warm_up_process(**_: Any) -> None:
    import threading

    from dataspace.compute.warm_up import contexts_warm_logged
    from dataspace.tasking import connect_ahead
    from dataspace.vault.services import keyrings_warm_logged

    def warm_up() -> None:
        keyrings_warm_logged()
        connect_ahead()
        contexts_warm_logged()

    threading.Thread(target=warm_up, name="process-warm-up", daemon=True).start()


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _tee_shutdown(**kwargs: Any) -> None:
    from dataspace.compute import tee_worker

    tee_worker.on_shutdown(**kwargs)


# Everything the worker loaded to start (Django, web3, pyarrow and the rest: ~220k objects) lives as
# long as the process: frozen, the cyclic collector stops walking it, which cut a worker's exit on
# SIGTERM from 2.1 s (the collections of Python's finalisation) to 0.2 s, and every full
# collection during jobs shrinks alike. Pool processes end with os._exit and never pay it.
@signals.worker_ready.connect
def _freeze_what_start_up_loaded(**_: Any) -> None:
    import gc

    gc.freeze()
