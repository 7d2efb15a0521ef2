"""Each role starts only with its purpose's keyrings (dataspace/roles.py); a forbidden key, a
missing HSM token or a wrong PIN stops the process at startup. Every case is a fresh process."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataspace.roles import ALLOWED_KEYRINGS, Keyring, Role
from dataspace.vault import keyrings
from tests.support import softhsm

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.smoke

_KEY_SETTINGS = ("VAULT_KEK", "CUSTODIAN_KEY", *(f"REDLAKE_KEYRING_{k.name}" for k in Keyring))


def start(role: str, tmp_path: Path, code: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """Starts Django as ``role`` with exactly the given keys, then runs ``code``."""
    base = {k: v for k, v in os.environ.items() if k not in _KEY_SETTINGS and not k.startswith("REDLAKE_KEYRING_")}
    base |= {"REDLAKE_ROLE": role, "REDLAKE_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "dataspace.settings"}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("role", "keyring"),
    [(role, keyring) for role in Role for keyring in Keyring if keyring not in ALLOWED_KEYRINGS[role]],
)
def test_role_given_a_foreign_keyring_refuses_to_start(role: Role, keyring: Keyring, tmp_path: Path) -> None:
    result = start(role.value, tmp_path, **{f"REDLAKE_KEYRING_{keyring.name}": f"file:{tmp_path / 'k'}"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"role '{role.value}' must not hold the '{keyring.value}' keyring" in result.stderr
    assert f"REDLAKE_KEYRING_{keyring.name}" in result.stderr


def test_role_given_its_own_keyrings_starts(tmp_path: Path) -> None:
    result = start(
        "custodian",
        tmp_path,
        "print('started')",
        REDLAKE_KEYRING_CKKS=f"file:{tmp_path / 'ckks'}",
        REDLAKE_KEYRING_RECEIPT=f"file:{tmp_path / 'receipt'}",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"


def test_the_single_kek_shorthand_is_refused_outside_dev(tmp_path: Path) -> None:
    result = start("ingest", tmp_path, VAULT_KEK=f"file:{tmp_path / 'keys'}")
    assert result.returncode != 0
    assert "role 'ingest' must not hold the 'ckks' keyring (given by VAULT_KEK)" in result.stderr


def test_receipt_key_in_the_environment_is_refused_on_an_he_worker(tmp_path: Path) -> None:
    result = start("he", tmp_path, CUSTODIAN_KEY="0x" + "11" * 32)
    assert result.returncode != 0
    assert "role 'he' must not hold the 'receipt' keyring (given by CUSTODIAN_KEY)" in result.stderr


def test_unknown_role_is_refused(tmp_path: Path) -> None:
    result = start("superuser", tmp_path)
    assert result.returncode != 0
    assert "REDLAKE_ROLE='superuser' is not a role" in result.stderr


def test_web_role_seals_to_the_public_half_but_cannot_unseal(tmp_path: Path) -> None:
    ring = keyrings.FileKeyring(tmp_path / "ingest-data")
    public = tmp_path / "data.pub.pem"
    public.write_bytes(keyrings.public_key_pem(ring.public_key()))
    code = """
import base64, json
from dataspace.vault import services as vault
from dataspace.vault.models import DataKey
new = vault.data_key_generate()
row = DataKey(id=new.id, purpose="dataset", keyring="data", kek_id=new.kek_id, wrapped_key=new.wrapped)
refusals = []
for attempt in (lambda: vault.keyring(vault.KeyringName.DATA), lambda: vault.data_key_unwrap(row)):
    try:
        attempt()
    except vault.KeyringUnavailable as exc:
        refusals.append(str(exc.code))
print(json.dumps({"id": new.id.hex, "kek_id": new.kek_id, "wrapped": base64.b64encode(new.wrapped).decode(),
                  "plaintext": base64.b64encode(new.plaintext).decode(), "refusals": refusals}))
"""
    result = start("web", tmp_path, code, REDLAKE_KEYRING_DATA_PUBLIC=str(public))
    assert result.returncode == 0, result.stderr
    sealed = json.loads(result.stdout)
    assert sealed["refusals"] == ["keyring_not_held", "keyring_not_held"]
    # The ingest side, holding the private half, opens what the web sealed.
    import uuid

    context = b"redlake-data-key\x00" + uuid.UUID(sealed["id"]).bytes
    opened = ring.unwrap(sealed["kek_id"], base64.b64decode(sealed["wrapped"]), context=context)
    assert opened == base64.b64decode(sealed["plaintext"])


def test_missing_hsm_token_is_a_startup_error(tmp_path: Path) -> None:
    env = softhsm.ensure_token(tmp_path)
    result = start("ingest", tmp_path, REDLAKE_KEYRING_DATA="pkcs11:token=no-such-token;label=data", **env)
    assert result.returncode != 0
    assert "HSM token 'no-such-token' not found" in result.stderr


def test_wrong_hsm_pin_is_a_startup_error(tmp_path: Path) -> None:
    env = softhsm.ensure_token(tmp_path)
    result = start(
        "ingest",
        tmp_path,
        REDLAKE_KEYRING_DATA=softhsm.spec("data") + ";pin-env=WRONG_PIN",
        WRONG_PIN=base64.b16encode(os.urandom(6)).decode(),
        **env,
    )
    assert result.returncode != 0
    assert "HSM token 'redlake': wrong PIN" in result.stderr
