"""An encrypted store whose build was never queued (the broker was away when the ingest
committed) is built once the broker is back, by the stores' sweeper, exactly once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from dataspace.accounts.models import Role
from dataspace.catalog import services
from dataspace.catalog.models import Dataset, Ingest
from dataspace.catalog.uploads import seal_chunks
from dataspace.compute import tasks
from dataspace.compute.models import EncryptedStore
from tests.support.anvil import free_port
from tests.support.users import make_user
from tests.support.waiting import wait_for
from tests.support.workers import ROOT, celery_env, purge_broker, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.smoke, pytest.mark.django_db(transaction=True)]
CSV = b"age,region\n" + b"".join(f"{20 + i % 50},{'nsew'[i % 4]}\n".encode() for i in range(500))


def unreachable_broker() -> str:
    """A broker URL of the configured kind at which nothing answers."""
    if str(settings.CELERY_BROKER_URL).startswith("sqla+"):
        return "sqla+sqlite:////nonexistent-redlake-dir/broker.sqlite3"
    return f"redis://127.0.0.1:{free_port()}/0"


def test_a_store_lost_with_the_broker_is_built_by_the_sweeper(tmp_path: Path, settings: Any) -> None:
    owner = make_user("owner", Role.PROVIDER)
    ingest = services.ingest_start(
        provider=owner, upload=seal_chunks([CSV], name="d.csv"), metadata=services.DatasetMetadata(title="d")
    )
    purge_broker()  # no worker takes the ingest message: the process below runs the ingest
    env = celery_env()
    env["CELERY_BROKER_URL"] = unreachable_broker()
    # The ingest commits in a process whose broker is gone: the dataset exists, its store's
    # build cannot be queued.
    code = f"import django; django.setup(); from dataspace.catalog.services import ingest_run; ingest_run(ingest_id='{ingest.id}')"
    ran = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "dataspace.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert "could not queue dataspace.compute.tasks.build_encrypted_store" in ran.stderr
    ingest.refresh_from_db()
    assert ingest.status == Ingest.Status.SUCCEEDED
    dataset = Dataset.objects.get(pk=ingest.dataset_id)
    assert not EncryptedStore.objects.filter(dataset=dataset).exists()

    worker = start_worker(celery_env(), tmp_path / "worker.log")
    try:
        settings.STORE_BUILD_REQUEUE_QUEUED_AFTER = 0
        assert tasks.sweep_encrypted_stores() == 1
        wait_for(
            lambda: EncryptedStore.objects.filter(dataset=dataset, status=EncryptedStore.Status.READY).exists(),
            timeout=120,
        )
        store = EncryptedStore.objects.get(dataset=dataset)
        assert store.attempts == 1
        assert tasks.sweep_encrypted_stores() == 0  # built: nothing left to send
    finally:
        worker.stop()
