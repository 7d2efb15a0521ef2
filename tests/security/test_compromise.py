"""The compromise suite: code execution in one tier yields only that tier's purpose.

For each role, a fresh process is started with the environment docker-compose.yml gives that
service (its role, its own PostgreSQL login, the keyrings it names), pointed at this test's
database and keyrings. It then tries everything an attacker holding that process would: read a
raw dataset, unwrap a data key, load a CKKS secret context, sign as the custodian, sign as a
custodial wallet. Whatever lies outside the role's purpose must fail, refused by the settings,
the code's role checks or PostgreSQL's GRANTs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from dataspace.accounts.selectors import wallet_get
from dataspace.accounts.services import wallet_create_custodial
from dataspace.compute import receipts, stores
from dataspace.compute.models import HEKey
from dataspace.roles import Role
from dataspace.vault import keyrings
from tests.support.compose_env import COMPOSE_SECRETS
from tests.support.datasets import ready_dataset
from tests.support.users import make_user

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration]

SERVICES = {
    Role.WEB: "web",
    Role.INGEST: "worker-ingest",
    Role.HE: "worker-he",
    Role.CUSTODIAN: "custodian",
    Role.CHAIN: "worker-chain",
    Role.BEAT: "beat",
}
# What each role may do, and nothing more.
PURPOSE: dict[Role, set[str]] = {
    Role.WEB: set(),
    Role.INGEST: {"read_raw_dataset", "unwrap_data_key"},
    Role.HE: set(),
    # The data keyring serves the TEE key release (a data key wrapped to an attested enclave).
    Role.CUSTODIAN: {"read_raw_dataset", "unwrap_data_key", "load_ckks_secret", "sign_as_custodian"},
    Role.CHAIN: {"sign_as_wallet"},
    Role.BEAT: set(),
}
ATTEMPTS = """
import json, sys
from django.conf import settings
from dataspace.accounts.models import Wallet
from dataspace.accounts.services import wallet_private_key
from dataspace.catalog.models import Dataset
from dataspace.compute import custody, receipts
from dataspace.compute.models import HEKey
from dataspace.vault import services as vault
from dataspace.vault.models import DataKey

ids = json.loads(sys.argv[1])

# Each purpose, tried through the platform's own functions and again around them (an attacker
# with code execution skips the role checks and calls the vault directly).
def read_raw_dataset():
    dataset = Dataset.objects.get(pk=ids["dataset"])
    with vault.blob_open(blob_name=dataset.blob_name, key=vault.data_key_unwrap(dataset.data_key)) as reader:
        assert reader.read(4096)

def unwrap_data_key():
    vault.data_key_unwrap(DataKey.objects.get(pk=ids["data_key"]))

def load_ckks_secret():
    key = HEKey.objects.get(pk=ids["he_key"])
    assert custody._secret_context(key.secret_blob, key.data_key_id).is_private()

def load_ckks_secret_around_the_check():
    key = HEKey.objects.defer(None).get(pk=ids["he_key"])
    with vault.blob_open(blob_name=key.secret_blob, key=vault.data_key_unwrap(key.data_key)) as reader:
        assert reader.read(64)

def sign_as_custodian():
    receipts.receipt_sign({"job_id": "forged"})

def sign_as_custodian_around_the_check():
    key = vault.sealed_file_read(path=settings.RECEIPT_KEY_FILE, keyring=vault.KeyringName.RECEIPT)
    assert len(key) == 32

def sign_as_wallet():
    assert len(wallet_private_key(wallet=Wallet.objects.get(pk=ids["wallet"]))) == 32

def sign_as_wallet_around_the_check():
    wallet = Wallet.objects.defer(None).get(pk=ids["wallet"])
    assert len(vault.secret_open(data_key=wallet.data_key, sealed=bytes(wallet.sealed_private_key))) == 32

outcome = {}
for attempt in (read_raw_dataset, unwrap_data_key, load_ckks_secret, load_ckks_secret_around_the_check,
                sign_as_custodian, sign_as_custodian_around_the_check, sign_as_wallet,
                sign_as_wallet_around_the_check):
    try:
        attempt()
        outcome[attempt.__name__] = "done"
    except BaseException as exc:  # an attacker would try the next thing: so do we
        outcome[attempt.__name__] = f"{type(exc).__name__}: {str(exc)[:200]}"
print("OUTCOME " + json.dumps(outcome))
"""


@pytest.fixture(scope="module")
def compose_services() -> dict[str, Any]:
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
    services: dict[str, Any] = yaml.safe_load(result.stdout)["services"]
    return services


@pytest.fixture
def secrets_on_record(transactional_db: Any, tmp_path: Path) -> dict[str, str]:
    """A dataset (raw blob and CKKS store), a custodial wallet and the custodian's receipt key,
    all committed, so another process can reach them."""
    if connection.vendor != "postgresql":
        pytest.skip("the database half of the suite needs PostgreSQL's GRANTs (set DATABASE_URL=postgres://...)")
    provider = make_user("provider-compromise")
    wallet_create_custodial(user=provider)
    csv = b"age,region\n" + b"".join(f"{20 + i % 50},r{i % 3}\n".encode() for i in range(40))
    dataset = ready_dataset(provider, csv, title="compromise")
    stores.encrypted_store_build(dataset_id=dataset.id)
    receipts.custodian()  # seals the receipt key to the receipt keyring, as the custodian would
    wallet = wallet_get(user=provider)
    assert wallet is not None
    assert dataset.data_key_id is not None
    return {
        "dataset": str(dataset.id),
        "data_key": str(dataset.data_key_id),
        "he_key": str(HEKey.objects.filter(store_id=dataset.id).values_list("pk", flat=True)[0]),
        "wallet": str(wallet.pk),
    }


def _role_environment(service: dict[str, Any], role: Role, keys: Path, password: str) -> dict[str, str]:
    """The service's compose environment, its values pointed at this test's database and keyrings."""
    given = {name: str(value) for name, value in (service.get("environment") or {}).items()}
    db = settings.DATABASES["default"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDLAKE_", "VAULT_", "CUSTODIAN_", "CHAIN_OP"))}
    env |= {
        "DJANGO_SETTINGS_MODULE": "dataspace.settings",
        "REDLAKE_VAR_DIR": os.environ.get("REDLAKE_VAR_DIR", str(settings.VAR_DIR)),
        "BLOB_ROOT": str(settings.BLOB_ROOT),
        "RECEIPT_KEY_FILE": str(settings.RECEIPT_KEY_FILE),
        "REDLAKE_ROLE": given["REDLAKE_ROLE"],
        "DATABASE_URL": f"postgres://redlake_{role.value}:{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
    }
    for name in given:
        if name.startswith("REDLAKE_KEYRING_"):
            ring = name.removeprefix("REDLAKE_KEYRING_").removesuffix("_PUBLIC").lower()
            if name.endswith("_PUBLIC"):
                public = keys.parent / f"{ring}.pub.pem"
                public.write_bytes(keyrings.public_key_pem(keyrings.FileKeyring(keys / ring).public_key()))
                env[name] = str(public)
            else:
                env[name] = f"file:{keys / ring}"
        elif name in {"CHAIN_OPERATOR_KEY", "CHAIN_OPERATOR_ADDRESS"}:
            env[name] = (
                os.environ.get(name, "")
                or {
                    "CHAIN_OPERATOR_KEY": settings.CHAIN_OPERATOR_KEY,
                    "CHAIN_OPERATOR_ADDRESS": "",
                }[name]
            )
    return env


@pytest.mark.parametrize("role", list(SERVICES))
def test_a_compromised_tier_gets_only_its_purpose(
    role: Role,
    compose_services: dict[str, Any],
    secrets_on_record: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    password = f"compromise-{role.value}"
    monkeypatch.setenv(f"REDLAKE_DB_PASSWORD_{role.value.upper()}", password)
    call_command("db_roles", "--apply", verbosity=0)
    keys = Path(str(settings.VAULT_KEK).removeprefix("file:"))
    env = _role_environment(compose_services[SERVICES[role]], role, keys, password)
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + ATTEMPTS, json.dumps(secrets_on_record)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("OUTCOME ")]
    outcome: dict[str, str] = json.loads(line.removeprefix("OUTCOME "))
    done = {name.removesuffix("_around_the_check") for name, what in outcome.items() if what == "done"}
    assert done == PURPOSE[role], outcome
