"""Sandbox jobs that should succeed, and the key release that must not happen: real bubblewrap
runs attested to a broker that calls ``enclaves.attestation.verify`` under a real ``Policy``."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from enclaves.attestation import InMemoryNonceStore, RefusalCode, TeeType
from enclaves.attestation.sandbox import launcher_public_key, load_or_create_launcher_key
from enclaves.bundle import AlgorithmBundle
from enclaves.sandbox import (
    JobFailed,
    LocalKeyBroker,
    ResultSignatureInvalid,
    Sandbox,
    host_problems,
    verify_result_signature,
)
from enclaves.sandbox.broker import KeyRelease
from enclaves.sandbox.cgroups import GROUP_PREFIX, _own_paths, remove_stale_groups
from tests.enclaves.conftest import MANIFEST, NUMBER_RESULT, TEST_LIMITS, Harness, python_bundle, requires_sandbox

pytestmark = requires_sandbox

LOGISTIC = """
import numpy as np
from sklearn.linear_model import LogisticRegression

def run(tables, params):
    t = tables["patients"]
    x = np.column_stack([t.column("age").to_numpy(), t.column("dose").to_numpy()])
    y = t.column("outcome").to_numpy()
    model = LogisticRegression(C=params["c"]).fit(x, y)
    return {
        "coefficients": model.coef_[0],
        "intercept": float(model.intercept_[0]),
        "accuracy": float(model.score(x, y)),
    }
"""
LOGISTIC_SCHEMA = {
    "type": "object",
    "properties": {
        "coefficients": {"type": "array", "items": {"type": "number"}, "maxItems": 2},
        "intercept": {"type": "number"},
        "accuracy": {"type": "number"},
    },
    "required": ["coefficients", "intercept", "accuracy"],
}
GROUP_BY_JOIN = """
SELECT c.region, count(*) AS orders, sum(o.amount) AS total
FROM orders o JOIN customers c ON o.customer_id = c.id
WHERE o.amount >= $min_amount
GROUP BY c.region
ORDER BY c.region
"""
GROUP_BY_SCHEMA = {
    "type": "object",
    "properties": {
        "rows": {
            "type": "array",
            "maxItems": 100,
            "items": {
                "type": "object",
                "properties": {
                    "region": {"type": "string"},
                    "orders": {"type": "integer"},
                    "total": {"type": "number"},
                },
            },
        }
    },
}


def _patients() -> pa.Table:
    rng = np.random.default_rng(7)
    age = rng.normal(50, 10, 400)
    dose = rng.normal(5, 2, 400)
    outcome = (0.08 * (age - 50) + 0.9 * (dose - 5) + rng.logistic(0, 0.5, 400) > 0).astype(np.int64)
    return pa.table({"age": age, "dose": dose, "outcome": outcome})


SKLEARN_LOCKFILE = {"scikit-learn": "1.9.1", "numpy": np.__version__}


def _logistic_bundle() -> AlgorithmBundle:
    return python_bundle(LOGISTIC, LOGISTIC_SCHEMA, lockfile=SKLEARN_LOCKFILE)


def test_logistic_regression_with_scikit_learn(harness: Harness) -> None:
    outcome = harness.run(_logistic_bundle(), [harness.seal_table("patients", _patients())], {"c": 1.0})
    assert outcome.result["accuracy"] > 0.8
    age, dose = outcome.result["coefficients"]
    assert age > 0
    assert dose > 0
    assert outcome.tee_type is TeeType.SANDBOX
    assert outcome.label == "SIMULATED"
    receipt = outcome.receipt()
    assert receipt["tee_type"] == "sandbox"
    assert receipt["label"] == "SIMULATED"
    assert receipt["measurement"] == harness.sandbox.measure(_logistic_bundle()).hex()
    assert receipt["result_sha256"] == hashlib.sha256(outcome.result_bytes).hexdigest()


def test_duckdb_group_by_with_a_join_of_two_datasets(harness: Harness) -> None:
    customers = pa.table({"id": [1, 2, 3, 4], "region": ["north", "south", "north", "east"]})
    orders = pa.table({"customer_id": [1, 1, 2, 3, 4, 4, 9], "amount": [10.0, 5.0, 7.5, 2.0, 100.0, 1.0, 50.0]})
    inputs = [
        harness.seal_table("customers", customers, key_id="provider-a", fmt="csv"),
        harness.seal_table("orders", orders, key_id="provider-b"),
    ]
    bundle = AlgorithmBundle(kind="sql", source=GROUP_BY_JOIN, output_schema=GROUP_BY_SCHEMA, max_output_bytes=4096)
    outcome = harness.run(bundle, inputs, {"min_amount": 2.0})
    assert outcome.result == {
        "rows": [
            {"region": "east", "orders": 1, "total": 100.0},
            {"region": "north", "orders": 3, "total": 17.0},
            {"region": "south", "orders": 1, "total": 7.5},
        ]
    }


def test_a_package_outside_the_lockfile_cannot_be_imported(harness: Harness) -> None:
    source = "def run(tables, params):\n    import sklearn\n    return {'value': 1}\n"
    with pytest.raises(JobFailed) as caught:
        harness.run(python_bundle(source, NUMBER_RESULT), [harness.seal_table("t", _patients())])
    assert caught.value.code == "algorithm_error"


def test_a_two_second_busy_loop_is_metered_at_two_cpu_seconds(harness: Harness) -> None:
    # CPU time, not wall time: the machine is shared, and the meter bills CPU.
    source = (
        "import time\n"
        "def run(tables, params):\n"
        "    start = time.process_time()\n"
        "    while time.process_time() - start < 2.0:\n"
        "        pass\n"
        "    return {'value': tables['t'].num_rows}\n"
    )
    outcome = harness.run(python_bundle(source, NUMBER_RESULT), [harness.seal_table("t", _patients())])
    metering = outcome.metering
    assert 1800 <= metering.billable_cpu_ms <= 2200, metering
    assert metering.cpu_ms >= metering.billable_cpu_ms
    assert metering.peak_memory_bytes > 10 * 1024 * 1024
    assert metering.bytes_read == sum(p.stat().st_size for p in harness.directory.glob("*.sealed"))


def test_a_cold_job_is_not_billed_for_the_warm_up_it_does_during_attestation(harness: Harness) -> None:
    # A sandbox started for its job says hello before it warms up (imports, a JWE unwrap, the
    # readers); its ready, which it sends before reading the release, closes the startup meter.
    outcome = harness.run(SIMPLE, [harness.seal_table("t", _patients())])
    metering = outcome.metering
    assert metering.startup_cpu_ms > 2 * metering.billable_cpu_ms, metering
    assert metering.cpu_ms == metering.startup_cpu_ms + metering.billable_cpu_ms


def test_a_cold_jobs_wall_clock_starts_once_its_sandbox_is_ready(harness: Harness) -> None:
    # Importing scikit-learn in the warm-up takes about a second; the job itself, a few ms. The
    # warm-up is startup (bounded by the startup timeout), not the offer's wall-clock limit.
    source = "import sklearn\n\ndef run(tables, params):\n    return {'value': tables['t'].num_rows}\n"
    bundle = python_bundle(source, NUMBER_RESULT, lockfile=SKLEARN_LOCKFILE)
    limits = replace(TEST_LIMITS, wall_seconds=0.5)
    outcome = harness.run(bundle, [harness.seal_table("t", _patients())], limits=limits)
    assert outcome.result == {"value": _patients().num_rows}
    assert outcome.timings_ms["start"] + outcome.timings_ms["run"] > 500, outcome.timings_ms


def test_the_result_signature_verifies_and_binds_the_result(harness: Harness) -> None:
    outcome = harness.run(_logistic_bundle(), [harness.seal_table("patients", _patients())], {"c": 0.5})
    attestation_hash = outcome.verified.attestation_hash()
    launcher = [launcher_public_key(harness.sandbox.launcher_key)]
    verify_result_signature(
        outcome.result_bytes, outcome.result_signature, attestation_hash=attestation_hash, launcher_keys=launcher
    )
    altered = outcome.result_bytes.replace(b"accuracy", b"accuracz")
    with pytest.raises(ResultSignatureInvalid):
        verify_result_signature(
            altered, outcome.result_signature, attestation_hash=attestation_hash, launcher_keys=launcher
        )
    with pytest.raises(ResultSignatureInvalid):
        verify_result_signature(
            outcome.result_bytes, outcome.result_signature, attestation_hash=bytes(32), launcher_keys=launcher
        )
    with pytest.raises(ResultSignatureInvalid):
        verify_result_signature(
            outcome.result_bytes, outcome.result_signature, attestation_hash=attestation_hash, launcher_keys=[bytes(32)]
        )


# --- attestation refusals: no key released ----------------------------------------------------


def _refused(harness: Harness, broker: LocalKeyBroker, bundle: AlgorithmBundle | None = None) -> JobFailed:
    bundle = bundle or python_bundle("def run(tables, params):\n    return {'value': 1}\n", NUMBER_RESULT)
    with pytest.raises(JobFailed) as caught:
        harness.run(bundle, [harness.seal_table("t", _patients())], broker=broker)
    assert caught.value.code == "attestation_refused"
    assert broker.released == []
    return caught.value


SIMPLE = python_bundle("def run(tables, params):\n    return {'value': 1}\n", NUMBER_RESULT)
OTHER = python_bundle("def run(tables, params):\n    return {'value': 2}\n", NUMBER_RESULT)


def test_a_measurement_not_on_the_allow_list_gets_no_key(harness: Harness) -> None:
    other = python_bundle("def run(tables, params):\n    return {'value': 2}\n", NUMBER_RESULT)
    broker = harness.broker(other)  # the provider approved a different algorithm
    assert _refused(harness, broker, SIMPLE).refusal is RefusalCode.MEASUREMENT_NOT_ALLOWED


class ReplayingBroker(LocalKeyBroker):
    """Hands out the same nonce again (a replayed challenge)."""

    last: bytes | None = None

    def issue_nonce(self) -> bytes:
        if self.last is None:
            self.last = super().issue_nonce()
        return self.last


def test_a_reused_nonce_gets_no_key(harness: Harness) -> None:
    broker = ReplayingBroker(policy=harness.policy(SIMPLE), nonces=InMemoryNonceStore(), data_keys=harness.data_keys)
    harness.seal_table("t", _patients())
    assert harness.run(SIMPLE, [harness.seal_table("t", _patients())], broker=broker).result == {"value": 1}
    broker.released.clear()
    assert _refused(harness, broker, SIMPLE).refusal is RefusalCode.NONCE_REUSED


def test_a_stale_nonce_gets_no_key(harness: Harness) -> None:
    issued = datetime.now(UTC)
    moments = iter([issued, issued + timedelta(hours=1)])
    broker = LocalKeyBroker(
        policy=harness.policy(SIMPLE),
        nonces=InMemoryNonceStore(),
        data_keys=harness.data_keys,
        clock=lambda: next(moments),
    )
    assert _refused(harness, broker, SIMPLE).refusal is RefusalCode.NONCE_EXPIRED


class OtherJobBroker(LocalKeyBroker):
    """A custodian checking the evidence against the manifest of the job *it* is releasing for."""

    def release(self, evidence, *, nonce, manifest_hash, key_ids) -> KeyRelease:  # type: ignore[no-untyped-def]
        other_job = hashlib.sha256(b"job manifest 2").digest()
        assert manifest_hash == MANIFEST
        return super().release(evidence, nonce=nonce, manifest_hash=other_job, key_ids=key_ids)


def test_report_data_for_another_job_gets_no_key(harness: Harness) -> None:
    broker = OtherJobBroker(policy=harness.policy(SIMPLE), nonces=InMemoryNonceStore(), data_keys=harness.data_keys)
    assert _refused(harness, broker, SIMPLE).refusal is RefusalCode.REPORT_DATA_MISMATCH


def test_sandbox_evidence_under_a_hardware_only_policy_gets_no_key(harness: Harness) -> None:
    broker = harness.broker(
        SIMPLE, allow_sandbox=False, sandbox_launcher_keys=frozenset(), allowed_tee_types=frozenset({TeeType.SGX})
    )
    assert _refused(harness, broker, SIMPLE).refusal is RefusalCode.SANDBOX_NOT_ALLOWED


def test_evidence_signed_by_an_unknown_launcher_gets_no_key(harness: Harness, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stranger = launcher_public_key(load_or_create_launcher_key(tmp_path / "other.pem"))
    broker = harness.broker(SIMPLE, sandbox_launcher_keys=frozenset({stranger}))
    assert _refused(harness, broker, SIMPLE).refusal is RefusalCode.CHAIN_UNTRUSTED


def test_a_key_wrapped_for_another_context_is_not_unwrapped(harness: Harness) -> None:
    class MisboundBroker(LocalKeyBroker):
        def release(self, evidence, *, nonce, manifest_hash, key_ids) -> KeyRelease:  # type: ignore[no-untyped-def]
            granted = super().release(evidence, nonce=nonce, manifest_hash=manifest_hash, key_ids=key_ids)
            from enclaves.attestation.keywrap import wrap_data_key

            tokens = {
                k: wrap_data_key(self.data_keys[k], granted.verified.ephemeral_public_key, context="another job")
                for k in key_ids
            }
            return replace(granted, tokens=tokens)

    broker = MisboundBroker(policy=harness.policy(SIMPLE), nonces=InMemoryNonceStore(), data_keys=harness.data_keys)
    harness.seal_table("t", _patients())
    with pytest.raises(JobFailed) as caught:
        harness.run(SIMPLE, [harness.seal_table("t", _patients())], broker=broker)
    assert caught.value.code == "key_unwrap_failed"


def test_a_tampered_input_is_refused_inside_the_enclave(harness: Harness) -> None:
    sealed = harness.seal_table("t", _patients())
    data = bytearray(sealed.path.read_bytes())
    data[200] ^= 1
    sealed.path.write_bytes(bytes(data))
    with pytest.raises(JobFailed) as caught:
        harness.run(SIMPLE, [sealed])
    assert caught.value.code == "input_tampered"


def test_a_prestarted_sandbox_runs_one_job_and_is_gone(harness: Harness) -> None:
    sandbox = harness.sandbox
    ahead = sandbox.start_run(SIMPLE, TEST_LIMITS)
    assert ahead.failure is None
    assert ahead.process is not None
    first = harness.sandbox.run_job(
        SIMPLE, [harness.seal_table("t", _patients())], {}, TEST_LIMITS, harness.broker(SIMPLE), MANIFEST, started=ahead
    )
    assert first.result == {"value": 1}
    assert ahead.process.poll() is not None
    assert ahead.group is None
    other = sandbox.start_run(SIMPLE, TEST_LIMITS)
    with pytest.raises(ValueError, match="another bundle"):
        sandbox.run_job(OTHER, [], {}, TEST_LIMITS, harness.broker(OTHER), MANIFEST, started=other)
    assert other.process is not None
    assert other.process.poll() is not None


def test_this_host_can_run_the_sandbox() -> None:
    assert host_problems() == []


def test_only_old_empty_job_groups_are_removed_as_stale(sandbox: Sandbox) -> None:
    base = Path("/sys/fs/cgroup/pids") / _own_paths()["pids"].lstrip("/") / GROUP_PREFIX
    stale, fresh = base / "job-stale-left-behind", base / "job-fresh-being-filled"
    for directory in (stale, fresh):
        directory.mkdir(parents=True, exist_ok=True)
    old = time.time() - 7200
    os.utime(stale, (old, old))
    try:
        remove_stale_groups()
        assert not stale.exists()
        assert fresh.exists()
    finally:
        for directory in (stale, fresh):
            if directory.exists():
                directory.rmdir()
