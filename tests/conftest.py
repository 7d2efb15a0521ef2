from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from dataspace.accounts.models import Role, User
from dataspace.accounts.services import api_token_issue, user_create
from dataspace.catalog.models import Ingest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # PBKDF2's deliberate slowness costs ~0.3 s a user; tests create hundreds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def isolated_vault(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Unit tests get their own blob directory and keyring. Integration tests share the
    session's (env-driven) ones with the worker process, so they are left alone."""
    if request.node.get_closest_marker("integration"):
        yield Path(settings.BLOB_ROOT)
        return
    from django.test import override_settings

    base = tmp_path_factory.mktemp("vault")
    storages = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(base / "blobs")}},
    }
    with override_settings(STORAGES=storages, BLOB_ROOT=base / "blobs", VAULT_KEK=f"file:{base / 'keys'}"):
        yield base


def make_user(username: str, *roles: Role) -> User:
    return user_create(username=username, password=f"pw-{username}-0123456789", roles=roles)


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        _, token = api_token_issue(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def provider(db: Any) -> User:
    return make_user("prov", Role.PROVIDER)


@pytest.fixture
def other_provider(db: Any) -> User:
    return make_user("prov2", Role.PROVIDER)


@pytest.fixture
def consumer(db: Any) -> User:
    return make_user("cons", Role.CONSUMER)


@pytest.fixture
def auditor(db: Any) -> User:
    return make_user("audi", Role.AUDITOR)


def upload(client: APIClient, content: bytes, name: str = "data.csv", **fields: Any) -> Any:
    handle = io.BytesIO(content)
    handle.name = name
    return client.post(
        "/api/datasets/", {"file": handle, "title": fields.pop("title", "t"), **fields}, format="multipart"
    )


def wait_for(predicate: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def wait_for_ingest(ingest_id: str, *, timeout: float = 120.0) -> Ingest:
    def finished() -> Ingest | None:
        ingest = Ingest.objects.get(pk=ingest_id)
        return ingest if ingest.status in {Ingest.Status.SUCCEEDED, Ingest.Status.FAILED} else None

    result: Ingest = wait_for(finished, timeout=timeout)
    return result


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

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


ALL_QUEUES = "default,ingest,chain,he,custody"


def start_worker(env: dict[str, str], log_path: Path, *, queues: str = ALL_QUEUES) -> WorkerProcess:
    """Starts ``celery worker`` in its own process, serving ``queues``, and waits until it is ready."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "dataspace",
                "worker",
                "--pool=solo",
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


def celery_env() -> dict[str, str]:
    """The environment of a worker process on the configured broker and the test database (the
    broker's queues purged of earlier tests' messages)."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    if db["ENGINE"].endswith("postgresql"):
        host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
        env["DATABASE_URL"] = f"postgres://{db['USER']}:{db['PASSWORD']}@{host}:{port}/{db['NAME']}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    _purge_broker()
    return env


@pytest.fixture
def celery_worker_process(transactional_db: Any, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A real Celery worker, in its own process, on the configured broker and the test database."""
    worker = start_worker(celery_env(), tmp_path / "worker.log")
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def anvil(tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real anvil node on a free port with the contracts deployed; worker processes started
    after this fixture talk to it too."""
    from dataspace.chain import deploy
    from tests.support.anvil import AnvilNode

    node = AnvilNode(tmp_path / "anvil-state.json").start()
    settings.CHAIN_RPC_URL = node.url
    monkeypatch.setenv("CHAIN_RPC_URL", node.url)
    try:
        list(deploy.deploy_all())
        yield node
    finally:
        node.stop()


def _purge_broker() -> None:
    from dataspace.celery import app

    with app.connection_for_write() as connection:
        for queue in ALL_QUEUES.split(","):
            # A queue that does not exist yet holds nothing to purge.
            with contextlib.suppress(Exception):
                connection.default_channel.queue_purge(queue)
