"""gunicorn's settings for the web tier (``--config python:dataspace.gunicorn_conf``): the command
line gives the bind address, workers and timeouts; this module adds what a hook must do."""

from __future__ import annotations

from typing import Any


def post_worker_init(worker: Any) -> None:
    """ISSUE-14: each web process opens its broker connection before it takes its first request.
    The first job a newcomer asked for spent ~0.13 s of its POST on the process's first send (the
    result backend's lookup, the connection, the queues' declaration). Here it runs before the
    worker serves, on no thread of its own; with the broker away it logs and the process starts."""
    import gc

    from dataspace.tasking import connect_ahead

    connect_ahead()
    # What the process loaded to serve stays loaded: frozen, the cyclic collector skips it, as in
    # the workers (dataspace/celery.py); stopping one web process and its arbiter went from 1.4 s to 0.45 s.
    gc.freeze()
