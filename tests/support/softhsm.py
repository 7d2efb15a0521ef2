"""A SoftHSM2 token for the PKCS#11 keyring tests: the one ``scripts/test.sh`` made (its
SOFTHSM2_CONF in the environment), or one made here before anything loads the PKCS#11 module
(SoftHSM2 reads its configuration once per process)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "redlake"


def ensure_token(var_dir: Path) -> dict[str, str]:
    """The environment that points at the token (also set in this process)."""
    if shutil.which("softhsm2-util") is None:
        pytest.skip("softhsm2 is not installed (apt-get install softhsm2; scripts/test.sh does)")
    if not os.environ.get("SOFTHSM2_CONF"):
        out = subprocess.run(
            ["bash", str(ROOT / "scripts" / "softhsm.sh"), str(var_dir)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for line in out.splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                os.environ[name] = value.strip("'")
    return {
        k: os.environ[k] for k in ("SOFTHSM2_CONF", "REDLAKE_HSM_PIN_FILE", "REDLAKE_PKCS11_MODULE") if k in os.environ
    }


def fresh_label() -> str:
    """A key label no other test uses, so each test starts with a token slot of its own."""
    return f"test-{uuid.uuid4().hex[:12]}"


def spec(label: str) -> str:
    return f"pkcs11:token={TOKEN};label={label}"
