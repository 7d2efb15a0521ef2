"""Fixtures shared by every test; the helpers they use live in ``tests/support``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from dataspace.accounts.models import Role, User
from tests.support.users import make_user
from tests.support.workers import WorkerProcess, celery_env, start_worker


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
