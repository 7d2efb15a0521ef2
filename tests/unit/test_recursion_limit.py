"""Every kind of process keeps the interpreter's recursion limit once the chain libraries are
loaded (py_ecc raises it to 100,000 on import, and the C JSON parser then overflows the C stack on a
deeply nested body instead of raising RecursionError)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOAD_CHAIN = "import eth_account, web3, py_ecc.bls, py_ecc.secp256k1"
PRINT_LIMIT = "print(sys.getrecursionlimit())"

# What each process imports first, as the process manager starts it.
ENTRY_POINTS = {
    "web": ["-c", f"import sys, dataspace.wsgi; {LOAD_CHAIN}; {PRINT_LIMIT}"],
    "worker": [
        "-c",
        "import sys; from dataspace.celery import app; app.loader.import_default_modules(); "
        f"{LOAD_CHAIN}; {PRINT_LIMIT}",
    ],
    "manage.py": ["manage.py", "shell", "-c", f"import sys; {LOAD_CHAIN}; {PRINT_LIMIT}"],
}


def limit_in(args: list[str]) -> int:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "dataspace.settings"}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def test_py_ecc_still_raises_the_limit_on_its_own() -> None:
    # The reason for the guard in dataspace/__init__.py; when this fails, the guard can go.
    assert limit_in(["-c", f"import sys; {LOAD_CHAIN}; {PRINT_LIMIT}"]) >= 100_000


@pytest.mark.parametrize("process", ENTRY_POINTS)
def test_every_process_keeps_the_default_recursion_limit(process: str) -> None:
    default = limit_in(["-c", f"import sys; {PRINT_LIMIT}"])
    assert limit_in(ENTRY_POINTS[process]) == default


def test_this_process_keeps_the_default_recursion_limit() -> None:
    import eth_account  # noqa: F401
    import web3  # noqa: F401

    assert sys.getrecursionlimit() <= 1000
