"""The warm pool: sandboxes started ahead of their jobs are as confined as cold ones, run one job
each, are replaced in the background, and leave nothing running once drained or closed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from enclaves.sandbox import JobFailed, Sandbox, WarmPool
from enclaves.sandbox.cgroups import JobCgroup
from enclaves.sandbox.run import SandboxRun
from tests.enclaves.conftest import (
    MANIFEST,
    NUMBER_RESULT,
    TEST_LIMITS,
    Harness,
    left_behind,
    python_bundle,
    requires_sandbox,
)
from tests.enclaves.test_sandbox_escape import PRELUDE, SECRET_VALUE, _is_ours, _is_sandboxed

pytestmark = requires_sandbox

VALUE = python_bundle(
    "def run(tables, params):\n    return {'value': float(tables['people'].num_rows)}\n", NUMBER_RESULT
)
ESCAPE = python_bundle(
    PRELUDE + "    import socket\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n    return {'value': 1}\n",
    NUMBER_RESULT,
)


def _table() -> pa.Table:
    return pa.table({"salary": [SECRET_VALUE, 1.0, 2.0]})


def _sandboxed() -> set[Path]:
    """This process's sandboxed descendants (other pytest workers run sandboxes beside it)."""
    return {p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_sandboxed(p) and _is_ours(p)}


@pytest.fixture
def pool(sandbox: Sandbox) -> Iterator[WarmPool]:
    before = _sandboxed()
    pool = WarmPool(sandbox, size=1)
    try:
        yield pool
    finally:
        pool.close()
        assert _sandboxed() - before == set()


def _waiting(pool: WarmPool) -> list[SandboxRun]:
    return [run for runs in pool._waiting.values() for run in runs]


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {name: value.strip() for name, _, value in (line.partition(":") for line in lines)}


def test_a_warm_sandbox_runs_one_job_and_a_fresh_one_takes_its_place(pool: WarmPool, harness: Harness) -> None:
    pool.keep(VALUE, TEST_LIMITS)
    assert pool.wait_ready(timeout=60)
    [first_warm] = _waiting(pool)
    assert first_warm.failure is None
    assert first_warm.process is not None

    outcome = pool.run_job(
        VALUE, [harness.seal_table("people", _table())], {}, TEST_LIMITS, harness.broker(VALUE), MANIFEST
    )
    assert outcome.result == {"value": 3.0}
    assert first_warm.process.poll() is not None
    assert first_warm.group is None
    assert first_warm not in _waiting(pool)

    assert pool.wait_ready(timeout=60)
    [second_warm] = _waiting(pool)
    assert second_warm is not first_warm
    again = pool.run_job(
        VALUE, [harness.seal_table("people", _table())], {}, TEST_LIMITS, harness.broker(VALUE), MANIFEST
    )
    # Each job had its own enclave: its own attested key, never one that saw another job's data.
    assert again.verified.ephemeral_public_key != outcome.verified.ephemeral_public_key
    stats = pool.stats()
    assert stats.taken == 2
    assert stats.missed == 0


def test_a_warm_sandbox_is_confined_like_a_cold_one(pool: WarmPool, sandbox: Sandbox, harness: Harness) -> None:
    pool.keep(ESCAPE, TEST_LIMITS)
    assert pool.wait_ready(timeout=60)
    [warm] = _waiting(pool)
    assert warm.template == sandbox._profile(ESCAPE)[2]  # the measured confinement, nothing else
    assert warm.group is not None
    pids = warm.group.pids()
    assert pids
    enclaves = []
    for pid in pids:
        status = _status(pid)
        assert status["Uid"].split() == ["65534"] * 4
        assert status["CapEff"] == "0000000000000000"
        assert status["NoNewPrivs"] == "1"
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/opt/python/bin/"):
            enclaves.append(pid)
            assert status["Seccomp"] == "2"  # the confinement filter (bubblewrap's own processes have none)
    assert len(enclaves) == 1
    group = warm.group
    memory = group.directories["" if group.version == 2 else "memory"]
    limit = memory / ("memory.max" if group.version == 2 else "memory.limit_in_bytes")
    assert int(limit.read_text()) == TEST_LIMITS.memory_bytes

    with pytest.raises(JobFailed) as caught:
        pool.run_job(
            ESCAPE, [harness.seal_table("people", _table())], {}, TEST_LIMITS, harness.broker(ESCAPE), MANIFEST
        )
    assert caught.value.code == "sandbox_violation"
    assert str(SECRET_VALUE) not in str(caught.value)


def test_draining_a_bundle_leaves_nothing_running(created_cgroups: list[JobCgroup], pool: WarmPool) -> None:
    before = _sandboxed()
    pool.keep(VALUE, TEST_LIMITS)
    pool.keep(ESCAPE, TEST_LIMITS)
    assert pool.wait_ready(timeout=60)
    warm = {run.bundle.digest(): run for run in _waiting(pool)}
    assert len(warm) == 2
    assert pool.drain(VALUE) == 1
    drained = warm[VALUE.digest()].process
    assert drained is not None
    assert drained.poll() is not None
    assert [run.bundle.digest() for run in _waiting(pool)] == [ESCAPE.digest()]
    assert pool.wait_ready(timeout=5)  # the drained bundle is no longer kept: nothing restarts it
    assert [run.bundle.digest() for run in _waiting(pool)] == [ESCAPE.digest()]

    pool.close()
    assert _waiting(pool) == []
    assert _sandboxed() - before == set()
    assert len(created_cgroups) >= 2
    assert left_behind(created_cgroups) == []
    pool.keep(VALUE, TEST_LIMITS)  # a closed pool starts nothing
    assert _waiting(pool) == []


def test_a_sandbox_that_died_while_it_waited_is_not_handed_out(pool: WarmPool, harness: Harness) -> None:
    pool.keep(VALUE, TEST_LIMITS)
    assert pool.wait_ready(timeout=60)
    [killed] = _waiting(pool)
    assert killed.process is not None
    killed.process.kill()
    killed.process.wait(timeout=10)
    outcome = pool.run_job(
        VALUE, [harness.seal_table("people", _table())], {}, TEST_LIMITS, harness.broker(VALUE), MANIFEST
    )
    assert outcome.result == {"value": 3.0}  # started cold instead
    assert killed.group is None  # torn down: its cgroup is gone
    assert pool.stats().missed == 1
