"""Fixtures shared by every test; the helpers they use live in ``tests/support``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from dataspace.accounts.models import Role, User
from tests.support import processes
from tests.support.users import make_user
from tests.support.workers import WorkerProcess, celery_env, start_worker

LEFTOVER_GRACE_SECONDS = 10.0


def pytest_sessionstart(session: pytest.Session) -> None:
    processes.become_subreaper()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fails the run if a process it started is still alive: a pool left open, or the orphaned
    pool of a worker process a test killed. The semaphore trackers are the one exception: they
    live as long as this process and end with it."""
    leftovers = processes.children_alive_after(os.getpid(), grace=LEFTOVER_GRACE_SECONDS)
    if not leftovers:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("!", f"{len(leftovers)} child processes still alive at the end of the session")
        for child in leftovers:
            reporter.write_line(str(child))
    processes.kill(leftovers)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # PBKDF2's deliberate slowness costs ~0.3 s a user; tests create hundreds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


_TEMPLATE_KEYRINGS: list[Path] = []


def _template_keyrings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _TEMPLATE_KEYRINGS:
        from dataspace.roles import Keyring
        from dataspace.vault.keyrings import FileKeyring

        directory = tmp_path_factory.mktemp("keyrings-template")
        for name in Keyring:
            FileKeyring(directory / name.value)
        _TEMPLATE_KEYRINGS.append(directory)
    return _TEMPLATE_KEYRINGS[0]


@pytest.fixture(autouse=True)
def isolated_vault(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Unit tests get their own blob directory and keyring. Integration tests share the
    session's (env-driven) ones with the worker process, so they are left alone."""
    if request.node.get_closest_marker("integration"):
        yield Path(settings.BLOB_ROOT)
        return
    from django.test import override_settings

    base = tmp_path_factory.mktemp("vault")
    # ISSUE-12: RSA-3072 root keys take a while to generate; each test gets a copy of one set.
    shutil.copytree(_template_keyrings(tmp_path_factory), base / "keys")
    storages = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(base / "blobs")}},
    }
    from dataspace.compute import receipts

    receipts._custodian_account.cache_clear()  # the receipt key is sealed to this test's keyring
    with override_settings(
        STORAGES=storages,
        BLOB_ROOT=base / "blobs",
        VAULT_KEK=f"file:{base / 'keys'}",
        RECEIPT_KEY_FILE=base / "receipt-key.sealed",
    ):
        yield base
    receipts._custodian_account.cache_clear()


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
