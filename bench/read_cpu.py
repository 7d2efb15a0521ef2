"""CPU per catalogue read in one process, through Django's WSGI handler (the whole middleware stack,
DRF, the token check and the catalogue state query), on the database DATABASE_URL names.

bench/load.py measures the served rate with locust on the same cores; this isolates what one read
costs the web tier, which moves much less with whatever else the machine runs. ``--profile``
prints where that CPU goes (cProfile on process time, sorted by own and by cumulative time).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db> python bench/read_cpu.py [--reads N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _setup() -> tuple[Callable[..., Any], str, list[str]]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dataspace.settings")
    os.environ.setdefault("REDLAKE_VAR_DIR", tempfile.mkdtemp(prefix="redlake-read-cpu-"))
    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    from dataspace.accounts.models import Role, User
    from dataspace.accounts.services import api_token_issue, user_create
    from dataspace.catalog.models import Dataset
    from tests.support.datasets import ready_dataset

    call_command("migrate", verbosity=0)
    provider = User.objects.filter(username="read-cpu-provider").first() or user_create(
        username="read-cpu-provider", password="read-cpu-provider-pw", roles=[Role.PROVIDER]
    )
    consumer = User.objects.filter(username="read-cpu-consumer").first() or user_create(
        username="read-cpu-consumer", password="read-cpu-consumer-pw", roles=[Role.CONSUMER]
    )
    if not Dataset.objects.filter(provider=provider).exists():
        rows = "".join(f"{i},{i % 7},{i * 0.5},{'abc'[i % 3]}\n" for i in range(500))
        ready_dataset(provider, f"id,group,cost,kind\n{rows}".encode(), title="read-cpu")
    _, token = api_token_issue(user=consumer)
    ids = [str(pk) for pk in Dataset.objects.values_list("pk", flat=True)]
    return get_wsgi_application(), token, ids


def _environ(path: str, token: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1:8000",
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_AUTHORIZATION": f"Token {token}",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


class _DatabaseCpu:
    """The CPU the server process behind this connection spends (PostgreSQL on this host only)."""

    def __init__(self) -> None:
        from django.db import connection

        self.path: Path | None = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.path = Path(f"/proc/{cursor.fetchone()[0]}/stat")
        self.start = self._read()

    def _read(self) -> float:
        if self.path is None or not self.path.exists():
            return float("nan")
        fields = self.path.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def since(self) -> float:
        return self._read() - self.start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=4000)
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    application, token, ids = _setup()
    # The load's mix (bench/locustfile.py): three listings to one dataset opened.
    paths = ["/api/datasets/"] * 3 + [f"/api/datasets/{ids[0]}/"]
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        statuses.append(status)

    def read(n: int) -> None:
        for i in range(n):
            body = application(_environ(paths[i % len(paths)], token), start_response)
            b"".join(body)
            body.close()

    read(200)  # warm: connections, caches, imports
    assert set(statuses) == {"200 OK"}, set(statuses)
    database = _DatabaseCpu()
    # Log lines go to stderr as they do under gunicorn; their cost is part of a read.
    # CPU time, not wall time: waiting for the database is not the web tier's cost.
    profiler = cProfile.Profile(time.process_time) if options.profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    read(options.reads)
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    database_ms = database.since() * 1000 / options.reads
    assert set(statuses) == {"200 OK"}, set(statuses)
    print(
        f"{options.reads} reads: {1000 * cpu / options.reads:.3f} ms CPU, {1000 * wall / options.reads:.3f} ms wall each"
        + ("" if math.isnan(database_ms) else f", database server {database_ms:.3f} ms CPU each")
    )
    if profiler:
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(45)
        stats.sort_stats("cumulative").print_stats(70)


if __name__ == "__main__":
    main()
