"""Keeps pytest-xdist's workers out of each other's way (loaded with ``-p``, before Django reads
its settings): each worker gets its own var directory (SQLite files, the embedded broker, blobs,
keys) and, on Redis, its own broker database, so a Celery worker started by one pytest worker
never takes another's tasks. pytest-django already gives each its own test database."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

REDIS_DATABASES = 16


def _own_redis_database(url: str, index: int) -> str:
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(base - index) % REDIS_DATABASES}"))


def _isolate(worker: str) -> None:
    index = int(worker.removeprefix("gw"))
    var_dir = os.environ.get("REDLAKE_VAR_DIR")
    if var_dir:
        os.environ["REDLAKE_VAR_DIR"] = os.path.join(var_dir, worker)
        os.makedirs(os.environ["REDLAKE_VAR_DIR"], exist_ok=True)
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if broker.startswith("redis://"):
        os.environ["CELERY_BROKER_URL"] = _own_redis_database(broker, index)
    elif broker.startswith("amqp://"):
        raise RuntimeError("the RabbitMQ run shares one vhost: run it without -n (scripts/test.sh does)")


if os.environ.get("PYTEST_XDIST_WORKER"):
    _isolate(os.environ["PYTEST_XDIST_WORKER"])
