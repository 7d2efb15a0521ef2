"""What operators see, against real services: JSON log lines with ids and no values (web process
and a real worker running a real job on anvil), /metrics scraped, /readyz with a dependency
really away (a broker nobody listens on, anvil stopped)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from django.test import Client

from dataspace.accounts.models import Role
from dataspace.compute.models import Job
from tests.support.anvil import AnvilNode, free_port
from tests.support.space import accept_offer, funded_user, ingest_dataset, publish_offer, wait_job
from tests.support.workers import WorkerProcess, celery_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Cell values no id, timestamp or hash is likely to contain.
SECRET_LABEL = "zqxv-canary-label"
SECRET_NUMBERS = [f"{7319 + i}.4417" for i in range(40)]


def canary_csv() -> bytes:
    rows = "".join(f"{value},{SECRET_LABEL}{i % 2}\n" for i, value in enumerate(SECRET_NUMBERS))
    return ("income,label\n" + rows).encode()


@pytest.fixture
def web_log_lines() -> Iterator[io.StringIO]:
    """The web process's log lines (this process), rendered by the configured formatter."""
    formatter = next(
        h.formatter
        for h in logging.getLogger().handlers
        if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    )
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def worker_json_lines(worker: WorkerProcess) -> list[dict[str, Any]]:
    """Every line the worker logged; the start-up banner Celery prints (not a log line) excepted."""
    lines = worker.log().splitlines()
    logged = [line for line in lines if line.startswith("{")]
    assert logged, worker.log()[-2000:]
    return [json.loads(line) for line in logged]


def test_log_lines_are_json_with_ids_and_no_cell_value(
    anvil: AnvilNode, celery_worker_process: WorkerProcess, web_log_lines: io.StringIO
) -> None:
    provider, provider_api = funded_user("hospital", Role.PROVIDER)
    consumer, consumer_api = funded_user("lab", Role.CONSUMER, tokens=10**24)
    dataset = ingest_dataset(provider_api, canary_csv(), non_personal="true")
    offer = publish_offer(provider_api, dataset, operations=["mean"], min_cohort=10)
    agreement = accept_offer(consumer_api, offer, calls=2)
    body = {"agreement": str(agreement.id), "operation": "mean", "params": {"column": "income"}, "purpose": "research"}
    response = consumer_api.post("/api/jobs/", body, format="json", HTTP_X_REQUEST_ID="req-obs-1")
    assert response.status_code == 202, response.json()
    assert response["X-Request-ID"] == "req-obs-1"
    job = wait_job(response.json()["id"])
    assert job.status == Job.Status.SETTLED, (job.failure_code, job.failure_message)

    web = json_lines(web_log_lines.getvalue())
    requests_logged = [line for line in web if line.get("logger") == "dataspace.requests"]
    assert requests_logged
    assert all(line.get("request_id") for line in requests_logged)
    post = next(line for line in requests_logged if line["request_id"] == "req-obs-1")
    assert post["user_id"] == consumer.pk
    assert post["method"] == "POST"
    assert post["status"] == 202
    assert any(line.get("user_id") == provider.pk for line in requests_logged)

    worker = worker_json_lines(celery_worker_process)
    assert all({"event", "level", "timestamp"} <= line.keys() for line in worker)
    job_lines = [line for line in worker if line.get("job_id") == str(job.id)]
    tasks = {line["task"] for line in job_lines}
    assert {"dataspace.compute.tasks.compute_job", "dataspace.compute.tasks.release_job"} <= tasks, tasks
    # The request that asked for the job is named by the lines of the work it queued.
    assert any(line.get("request_id") == "req-obs-1" for line in job_lines)
    assert any(line.get("ingest_id") for line in worker)

    everything = web_log_lines.getvalue() + celery_worker_process.log()
    for value in [SECRET_LABEL, *SECRET_NUMBERS]:
        assert value not in everything, f"cell value {value} in a log line"


def test_metrics_are_scraped_from_loopback_and_refused_elsewhere(settings: Any, anvil: AnvilNode) -> None:
    client = Client()
    body = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert body.status_code == 200
    text = body.content.decode()
    for family in [
        'redlake_jobs{state="settled"}',
        "redlake_job_step_seconds_bucket",
        'redlake_outbox_backlog{status="pending"}',
        "redlake_privacy_rho_spent",
        'redlake_queue_depth{queue="he"}',
        "django_http_requests_total_by_method_total",
    ]:
        assert family in text, family

    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 404
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200


def test_readyz_is_ready_with_every_dependency_up(anvil: AnvilNode) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ready"
    assert body["failing"] == []
    assert set(body["checks"]) == {"database", "broker", "chain", "keyrings"}
    assert all(check["ok"] for check in body["checks"].values())
    assert Client().get("/healthz").json() == {"status": "ok"}


def test_readyz_names_a_stopped_chain_node(anvil: AnvilNode) -> None:
    anvil.stop()
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["chain"]
    assert response.json()["checks"]["chain"]["ok"] is False
    assert Client().get("/healthz").status_code == 200  # alive, only not ready


def readyz_in_a_fresh_process(**environment: str) -> tuple[int, dict[str, Any]]:
    """GET /readyz in a web process started with ``environment`` on the test database."""
    env = {**celery_env(), "DJANGO_SETTINGS_MODULE": "dataspace.settings", **environment}
    probe = (
        "import django, json; django.setup(); from django.test import Client; "
        "r = Client().get('/readyz'); print(json.dumps([r.status_code, r.json()]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    status, body = json.loads(done.stdout.strip().splitlines()[-1])
    return int(status), body


def test_readyz_names_a_broker_nobody_listens_on(anvil: AnvilNode) -> None:
    status, body = readyz_in_a_fresh_process(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert status == 503
    assert body["failing"] == ["broker"]
    assert body["checks"]["broker"]["ok"] is False
