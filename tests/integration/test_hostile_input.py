"""Hostile input at the platform's doors, against real processes: a web process (gunicorn) and a
Celery worker each receive a deeply nested JSON document, answer or drop it, and keep serving.

Before the fix one such body, sent anonymously, killed the process with SIGSEGV: py_ecc raised the
recursion limit to 100,000, so the C JSON parser overflowed the C stack instead of raising."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from kombu import Producer

from dataspace.accounts.models import Role
from dataspace.accounts.services import api_token_issue
from tests.support.anvil import free_port
from tests.support.users import make_user
from tests.support.waiting import wait_for
from tests.support.workers import ROOT, celery_env, gunicorn_command, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
HOSTILE = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def web(transactional_db: Any, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """gunicorn serving dataspace.wsgi, as in production, on the test database."""
    port, log_path = free_port(), tmp_path / "web.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            gunicorn_command(port),
            cwd=ROOT,
            env=celery_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/healthz") or process.poll() is not None, timeout=60)
        assert process.poll() is None, log_path.read_text()
        yield base, process, log_path
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except (requests.ConnectionError, requests.Timeout):  # a worker still booting may not answer in time
        return False


def test_web_process_refuses_a_deeply_nested_body_and_stays_up(web: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    base, process, log_path = web
    _, token = api_token_issue(user=make_user("lab", Role.CONSUMER))
    for path, headers in [("/api/auth/token/", {}), ("/api/jobs/", {"Authorization": f"Token {token}"})]:
        response = requests.post(
            f"{base}{path}", data=HOSTILE, headers={"Content-Type": "application/json", **headers}, timeout=60
        )
        assert (response.status_code, response.json()["error"]["code"]) == (400, "nesting_too_deep")
        assert process.poll() is None, log_path.read_text()
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
    assert "Worker exiting" not in log_path.read_text()  # gunicorn would have replaced a dead worker


def test_worker_drops_a_deeply_nested_message_and_runs_the_next_task(transactional_db: Any, tmp_path: Path) -> None:
    from dataspace.catalog import tasks
    from dataspace.celery import app

    worker = start_worker(celery_env(), tmp_path / "worker.log", queues="default")
    try:
        queue = app.amqp.queues["default"]
        with app.connection_for_write() as connection:
            producer = Producer(connection.default_channel)
            # As protocol 2 sends it (the body decoded when the task is built) and without
            # headers (protocol 1: the body decoded to find the task's name).
            for headers in [{"task": tasks.requeue_stale_ingests.name, "id": str(uuid.uuid4()), "lang": "py"}, {}]:
                producer.publish(
                    HOSTILE,
                    exchange=queue.exchange,
                    routing_key=queue.routing_key,
                    declare=[queue],
                    content_type="application/json",
                    content_encoding="utf-8",
                    headers=headers,
                )
        wait_for(lambda: worker.log().count("Can't decode message body") == 2 or worker.process.poll() is not None)
        assert worker.process.poll() is None, worker.log()[-3000:]

        result = tasks.requeue_stale_ingests.delay()
        wait_for(lambda: f"[{result.id}] succeeded" in worker.log() or worker.process.poll() is not None)
        assert worker.process.poll() is None, worker.log()[-3000:]
    finally:
        worker.stop()
