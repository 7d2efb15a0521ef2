"""Production settings pass Django's deployment checks; the embedded defaults are what they claim."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.smoke


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def production_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(
        DEBUG="false",
        SECRET_KEY=base64.b64encode(os.urandom(48)).decode(),
        ALLOWED_HOSTS="redlake.example.org",
        DATABASE_URL="postgres://redlake:secret@db.invalid:5432/redlake",
        CELERY_BROKER_URL="redis://redis.invalid:6379/0",
        VAULT_KEK="env:REDLAKE_KEK",
        REDLAKE_KEK=base64.b64encode(os.urandom(32)).decode(),
        SECURE_SSL_REDIRECT="true",
        SECURE_HSTS_SECONDS="31536000",
        SECURE_HSTS_PRELOAD="true",
        REDLAKE_VAR_DIR=str(tmp_path),
    )
    return env


def test_check_deploy_passes_with_production_settings(tmp_path: Path) -> None:
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_fails_without_a_secret_key(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stdout + result.stderr


def test_debug_is_off_unless_asked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DEBUG"} | {"REDLAKE_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
        ],
        cwd=ROOT,
        env=env | {"DJANGO_SETTINGS_MODULE": "dataspace.settings"},
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "False"


def test_check_deploy_refuses_the_anvil_key_on_a_real_chain(tmp_path: Path) -> None:
    env = production_env(tmp_path) | {"CHAIN_ID": "1"}
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "redlake.E001" in result.stdout + result.stderr
