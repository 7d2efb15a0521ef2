"""The SDK without a platform: its keys, its errors, its frames, and that it installs and runs
in a fresh venv with no Django."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

ROOT = Path(__file__).resolve().parents[2]
SDK_SRC = ROOT / "sdk" / "src"
sys.path.insert(0, str(SDK_SRC))

from redlake_client import encoding, errors, signing  # noqa: E402
from redlake_client.models import Job  # noqa: E402
from redlake_client.verify import receipt_signer, settled_attestation  # noqa: E402


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(bytes(Account.create().key).hex())
    path.chmod(0o640)
    with pytest.raises(errors.KeyFileError, match="chmod 600"):
        signing.from_key_file(path)
    path.chmod(0o600)
    assert signing.from_key_file(path).address.startswith("0x")


def test_a_keystore_with_the_wrong_passphrase_is_refused(tmp_path: Path) -> None:
    account = Account.create()
    path = tmp_path / "keystore.json"
    path.write_text(json.dumps(Account.encrypt(account.key, "right")))
    path.chmod(0o600)
    with pytest.raises(errors.KeyFileError, match="Wrong passphrase"):
        signing.from_keystore(path, "wrong")
    assert signing.from_keystore(path, "right").address == account.address


def test_the_signer_never_shows_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    account = Account.create()
    monkeypatch.setenv(signing.KEY_ENV, bytes(account.key).hex())
    signer = signing.from_env()
    assert signer.address == account.address
    assert bytes(account.key).hex() not in repr(signer)


@pytest.mark.parametrize(
    ("status", "code", "kind", "exit_code"),
    [
        (403, "purpose_not_allowed", errors.PolicyRefused, 2),
        (409, "calls_exhausted", errors.PolicyRefused, 2),
        (401, "authentication_failed", errors.AuthenticationError, 4),
        (404, "not_found", errors.NotFoundError, 5),
        (503, "chain_unavailable", errors.ServiceUnavailable, 6),
        (400, "invalid_operation", errors.InvalidRequest, 9),
    ],
)
def test_api_errors_keep_their_stable_code_and_exit_code(status: int, code: str, kind: type, exit_code: int) -> None:
    error = errors.api_error(status, {"error": {"code": code, "message": "m", "details": {"x": 1}}})
    assert isinstance(error, kind)
    assert (error.code, error.status, error.details, error.exit_code) == (code, status, {"x": 1}, exit_code)


def job(operation: str, result: Any, bounds: Any, params: dict[str, Any]) -> Job:
    return Job.model_validate(
        {
            "id": "00000000-0000-0000-0000-000000000001",
            "status": "settled",
            "agreement": "00000000-0000-0000-0000-000000000002",
            "dataset": "00000000-0000-0000-0000-000000000003",
            "operation": operation,
            "params": params,
            "purpose": "research",
            "epsilon": 0.5,
            "result": result,
            "error_bounds": bounds,
        }
    )


def test_a_group_by_is_a_frame_per_category() -> None:
    result = {"groups": {"north": {"mean": 2.0, "count": 10}, "south": {"mean": 3.0, "count": 12}}}
    bounds = {"groups": {"north": {"mean": 0.1, "count": 1.0}, "south": {"mean": 0.2, "count": 1.0}}}
    frame = job("group_by", result, bounds, {"by": "region"}).frame()
    assert list(frame.index) == ["north", "south"] and frame.index.name == "region"
    assert frame.loc["south", "mean"] == 3.0 and frame.loc["south", "mean_error_95"] == 0.2


def test_a_regression_is_a_coefficient_table_with_error_bounds() -> None:
    result = {"intercept": 1.0, "coefficients": {"age": 0.5, "bmi": 2.0}, "count": 100}
    bounds = {"intercept": 0.1, "coefficients": {"age": 0.01, "bmi": 0.2}, "count": 3}
    frame = job("linear_regression", result, bounds, {}).frame()
    assert list(frame.index) == ["intercept", "age", "bmi"]
    assert frame.loc["bmi", "lower"] == pytest.approx(1.8) and frame.loc["bmi", "upper"] == pytest.approx(2.2)


def test_a_receipt_recovers_to_its_signer() -> None:
    from eth_account.messages import encode_defunct
    from redlake_client.encoding import canonical_json

    account = Account.create()
    body = {"job_id": "0x01", "result_salt": "0x02"}
    signature = account.sign_message(encode_defunct(canonical_json(body))).signature
    assert receipt_signer({**body, "signature": "0x" + bytes(signature).hex()}) == account.address


def test_the_settlement_pins_an_algorithm_jobs_enclave_attestation_and_otherwise_the_receipts_hash() -> None:
    enclave = "ef" * 32
    tee = {"job_id": "0x01", "engine": "tee", "tee": {"label": "SIMULATED", "attestation_hash": enclave}}
    assert settled_attestation(tee) == bytes.fromhex(enclave)
    he = {"job_id": "0x01", "engine": "he", "noise": {"epsilon": 0.5}}
    assert settled_attestation(he) == hashlib.sha256(encoding.canonical_json(he)).digest()
    assert settled_attestation({**tee, "tee": {"attestation_hash": "not hex"}}) == b""


def test_the_cli_reports_a_bad_command_line_with_exit_64() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "redlake_client.cli", "job", "run", "--no-such-option"],
        env={**os.environ, "PYTHONPATH": str(SDK_SRC)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == errors.EXIT_USAGE


@pytest.mark.integration  # slow: resolves and installs web3, pandas and the rest (about 1-3 minutes)
@pytest.mark.timeout(1200)
def test_the_sdk_installs_in_a_fresh_venv_and_runs_without_django(tmp_path: Path) -> None:
    """`pip install ./sdk` in a venv without the project's packages (no system site packages),
    from the machine's package index and wheel cache; then `redlake --help` and an import that
    must not pull Django in."""
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(target)
    python = target / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(ROOT / "sdk")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    helped = subprocess.run([str(target / "bin" / "redlake"), "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0 and "verify" in helped.stdout, helped.stderr
    probe = "import sys, redlake_client, redlake_client.cli; assert 'django' not in sys.modules; print('ok')"
    imported = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    assert imported.stdout.strip() == "ok", imported.stderr
    no_django = subprocess.run([str(python), "-c", "import django"], capture_output=True, text=True, check=False)
    assert no_django.returncode != 0
