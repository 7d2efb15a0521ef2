"""Real Celery worker processes for integration tests, on the configured broker and test database."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
ALL_QUEUES = "default,ingest,chain,he,custody"


class WorkerProcess:
    def __init__(self, process: subprocess.Popen[bytes], log_path: Path, env: dict[str, str]):
        self.process = process
        self.log_path = log_path
        self.env = env

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def peak_rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM for the worker")

    def drain_queue(self, queue: str, *, timeout: float = 60) -> None:
        """Returns once the worker has taken everything sent to ``queue`` before this call: a
        marker task is sent behind it and waited for (a queue is first in, first out)."""
        from dataspace.celery import app

        marker = app.send_task("dataspace.chain.tasks.index_chain_events", queue=queue)

        def marker_done() -> bool:
            lines = self.log().splitlines()
            return any(f"[{marker.id}]" in line and ("succeeded" in line or "raised" in line) for line in lines)

        wait_for(marker_done, timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_worker(env: dict[str, str], log_path: Path, *, queues: str = ALL_QUEUES, pool: str = "solo") -> WorkerProcess:
    """Starts ``celery worker`` in its own process, serving ``queues``, and waits until it is ready
    (``pool``: solo, or prefork with one child, as the custodian runs in compose)."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "dataspace",
                "worker",
                f"--pool={pool}",
                *(["--concurrency=1"] if pool == "prefork" else []),
                f"--queues={queues}",
                "--loglevel=INFO",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                f"--hostname=test-{os.getpid()}-{log_path.stem}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(process, log_path, env)
    wait_for(lambda: "ready" in worker.log() or process.poll() is not None, timeout=60)
    if process.poll() is not None:
        raise AssertionError(f"worker exited at start:\n{worker.log()}")
    return worker


def gunicorn_command(port: int) -> list[str]:
    """One gunicorn web process serving dataspace.wsgi with the settings module the Procfile, the
    image and compose pass."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "dataspace.wsgi",
        "--config",
        "python:dataspace.gunicorn_conf",
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        "1",
    ]


def celery_env() -> dict[str, str]:
    """The environment of a worker process on the configured broker and the test database (the
    broker's queues purged of earlier tests' messages)."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    if connection.vendor == "postgresql":
        host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
        env["DATABASE_URL"] = f"postgres://{db['USER']}:{db['PASSWORD']}@{host}:{port}/{db['NAME']}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    purge_broker()
    return env


def purge_broker() -> None:
    from dataspace.celery import app

    with app.connection_for_write() as connection:
        for queue in [*ALL_QUEUES.split(","), "tee"]:  # ISSUE-13: tee workers are started by their tests
            # A queue that does not exist yet holds nothing to purge. ISSUE-14: one channel per
            # queue, since AMQP closes a channel on a missing queue and the next purge would fail.
            with contextlib.suppress(Exception), connection.channel() as channel:
                channel.queue_purge(queue)  # type: ignore[attr-defined]  # every kombu transport's channel has it
