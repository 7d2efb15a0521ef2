"""The compose file as docker-compose reads it (``docker-compose config``, Debian's package): each
service runs one role, with only the keys that role may hold and its own database login."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataspace.roles import ALLOWED_KEYRINGS, Keyring, Role
from tests.support.compose_env import COMPOSE_SECRETS

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]
# Which service runs which role.
SERVICE_ROLES = {
    "web": Role.WEB,
    "worker-ingest": Role.INGEST,
    "worker-he": Role.HE,
    "custodian": Role.CUSTODIAN,
    "worker-chain": Role.CHAIN,
    "chain-deploy": Role.CHAIN,
    "beat": Role.BEAT,
}
# Keys by the keyring they belong to (a *_PUBLIC half only seals: anyone may hold it).
KEY_VARIABLES: dict[str, Keyring] = {
    "REDLAKE_KEYRING_DATA": Keyring.DATA,
    "REDLAKE_KEYRING_CKKS": Keyring.CKKS,
    "REDLAKE_KEYRING_WALLET": Keyring.WALLET,
    "REDLAKE_KEYRING_RECEIPT": Keyring.RECEIPT,
    "CUSTODIAN_KEY": Keyring.RECEIPT,
    "CHAIN_OPERATOR_KEY": Keyring.WALLET,
}
NEVER_IN_WEB_OR_HE = {"REDLAKE_KEK", "REDLAKE_KEK_PREVIOUS", "CHAIN_OPERATOR_KEY", "CUSTODIAN_KEY"}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install --no-install-recommends docker-compose)")
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        env={**os.environ, **COMPOSE_SECRETS},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)["services"]
    return parsed


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


@pytest.mark.parametrize("name", ["web", "worker-he"])
def test_web_and_he_hold_no_key(services: dict[str, Any], name: str) -> None:
    env = _env(services[name])
    held = {v for v in env if v in NEVER_IN_WEB_OR_HE or v in KEY_VARIABLES}
    assert held == set(), f"{name} is given {held}"


def test_every_service_runs_as_its_role_with_its_own_database_login(services: dict[str, Any]) -> None:
    for name, role in SERVICE_ROLES.items():
        env = _env(services[name])
        assert env.get("REDLAKE_ROLE") == role.value, name
        assert env["DATABASE_URL"].startswith(f"postgres://redlake_{role.value}:"), name


def test_each_service_holds_only_the_keyrings_its_role_allows(services: dict[str, Any]) -> None:
    for name, role in SERVICE_ROLES.items():
        env = _env(services[name])
        held = {KEY_VARIABLES[v] for v in env if v in KEY_VARIABLES}
        assert "REDLAKE_KEK" not in env, f"{name}: one key for every purpose"
        assert "VAULT_KEK" not in env, f"{name}: one key for every purpose"
        assert held <= ALLOWED_KEYRINGS[role], (name, held - ALLOWED_KEYRINGS[role])


def test_only_the_owner_jobs_hold_the_owner_password(services: dict[str, Any]) -> None:
    for name, service in services.items():
        env = _env(service)
        if "DATABASE_URL" in env and env["DATABASE_URL"].startswith("postgres://redlake:"):
            assert name in {"migrate", "db-roles"}, name


def test_he_and_web_never_mount_raw_uploads_readably(services: dict[str, Any]) -> None:
    he_mounts = [str(v) for v in services["worker-he"].get("volumes", [])]
    assert not any("uploads" in m for m in he_mounts)
    assert any("/blobs/he" in m and m.endswith(":ro") for m in he_mounts)
