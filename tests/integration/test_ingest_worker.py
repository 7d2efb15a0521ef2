"""Ingest through a real Celery worker process on the configured broker and database."""

from __future__ import annotations

import logging
import os
import signal
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from dataspace.accounts.models import User
from dataspace.catalog import services
from dataspace.catalog.models import Dataset, Ingest
from dataspace.catalog.uploads import seal_chunks
from dataspace.demo.synthetic import registry_csv_chunks
from tests.support.users import client_for, upload
from tests.support.waiting import wait_for, wait_for_ingest
from tests.support.workers import WorkerProcess, start_worker

pytestmark = pytest.mark.integration


def canary_csv(marker: str, rows: int = 3_000) -> bytes:
    # Unique text markers in every row and one extreme numeric marker.
    lines = ["patient,age,note,weight"]
    for i in range(rows):
        weight = "987654.125" if i == rows // 2 else f"{60 + i % 40}.5"
        lines.append(f"{marker}-P{i:05d},{20 + i % 60},{marker}-note-{i},{weight}")
    return ("\n".join(lines) + "\n").encode()


def test_canary_never_leaves_the_vault(
    provider: User, consumer: User, celery_worker_process: WorkerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    marker = f"CANARY{uuid.uuid4().hex[:12]}"
    responses: list[str] = []

    def record(response: Any) -> Any:
        responses.append(response.content.decode(errors="replace"))
        return response

    owner, other = client_for(provider), client_for(consumer)
    accepted = record(upload(owner, canary_csv(marker), name="canary.csv", title="Canary"))
    assert accepted.status_code == 202
    ingest = wait_for_ingest(accepted.json()["id"])
    assert ingest.status == Ingest.Status.SUCCEEDED, ingest.error_message
    dataset_id = ingest.dataset_id
    for client in (owner, other):
        record(client.get(f"/api/ingests/{ingest.id}/"))
        record(client.get("/api/datasets/"))
        record(client.get(f"/api/datasets/{dataset_id}/"))
        record(client.get(f"/catalog/datasets/{dataset_id}.jsonld"))
        record(client.get("/catalog.jsonld"))
        record(client.get("/api/me/"))
    record(owner.get("/api/ingests/"))

    for needle in (marker, "987654"):
        assert not any(needle in body for body in responses), f"{needle} in an API response"
        assert needle not in caplog.text, f"{needle} in a log line of the web process"
        assert needle not in celery_worker_process.log(), f"{needle} in a worker log line"
    storage = Path(settings.VAR_DIR)
    for path in storage.rglob("*"):
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), f"marker in {path}"
    blob = Path(settings.BLOB_ROOT) / Dataset.objects.get(pk=dataset_id).blob_name
    assert blob.exists()


def test_worker_reports_progress_and_creates_the_dataset(provider: User, celery_worker_process: WorkerProcess) -> None:
    client = client_for(provider)
    content = b"".join(registry_csv_chunks(300_000, seed=11))
    accepted = upload(client, content, name="registry.csv", title="Registry")
    assert accepted.status_code == 202
    seen: set[int] = set()

    def finished() -> bool:
        body = client.get(f"/api/ingests/{accepted.json()['id']}/").json()
        seen.add(body["progress"])
        return body["status"] in {"succeeded", "failed"}

    wait_for(finished, timeout=120, interval=0.05)
    body = client.get(f"/api/ingests/{accepted.json()['id']}/").json()
    assert body["status"] == "succeeded", body
    assert seen <= set(range(101))
    assert max(seen) == 100
    assert Dataset.objects.get(pk=body["dataset"]).row_count == 300_000


def test_million_rows_ingest_in_bounded_memory(provider: User, celery_worker_process: WorkerProcess) -> None:
    upload_ = seal_chunks(registry_csv_chunks(1_000_000, seed=5), name="million.csv")
    ingest = services.ingest_start(
        provider=provider, upload=upload_, metadata=services.DatasetMetadata(title="Million")
    )
    ingest = wait_for_ingest(str(ingest.id), timeout=300)
    assert ingest.status == Ingest.Status.SUCCEEDED, ingest.error_message
    dataset = Dataset.objects.get(pk=ingest.dataset_id)
    assert dataset.row_count == 1_000_000
    assert len(dataset.schema) == 10
    peak = celery_worker_process.peak_rss_bytes()
    assert peak < 500 * 1024 * 1024, f"worker peak RSS {peak / 2**20:.0f} MiB"


def test_ingest_survives_a_worker_killed_mid_job(
    provider: User, celery_worker_process: WorkerProcess, tmp_path: Path
) -> None:
    upload_ = seal_chunks(registry_csv_chunks(1_000_000, seed=9), name="killed.csv")
    ingest = services.ingest_start(provider=provider, upload=upload_, metadata=services.DatasetMetadata(title="K"))
    wait_for(lambda: Ingest.objects.get(pk=ingest.id).status == Ingest.Status.RUNNING, timeout=60, interval=0.02)
    os.kill(celery_worker_process.pid, signal.SIGKILL)
    celery_worker_process.process.wait()
    assert Ingest.objects.get(pk=ingest.id).status == Ingest.Status.RUNNING

    # The sweeper (Celery beat, every minute) finds the orphan; here it runs with a zero grace.
    assert services.ingest_requeue_stale(queued_for=timedelta(0), running_for=timedelta(0)) == 1
    replacement = start_worker(celery_worker_process.env, tmp_path / "worker-2.log")
    try:
        finished = wait_for_ingest(str(ingest.id), timeout=300)
    finally:
        replacement.stop()
    assert finished.status == Ingest.Status.SUCCEEDED, finished.error_message
    assert finished.attempts == 2
    assert Dataset.objects.filter(ingest=finished).count() == 1
