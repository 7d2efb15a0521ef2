"""ISSUE-13: the tee worker's life, with real worker processes: it keeps a warm (pre-started)
sandbox per approved algorithm, a job takes it and a fresh one replaces it, a revoked approval
and the worker's shutdown leave no sandbox running; a host that cannot sandbox is refused the
``tee`` queue at start, and the custodian's deploy check says why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dataspace.accounts.models import Role
from dataspace.compute.models import Algorithm, Job
from dataspace.compute.tee_worker import refusal_message
from tests.enclaves.conftest import requires_sandbox
from tests.integration.test_jobs import DECLARED, registry_csv
from tests.integration.test_tee_jobs import VALUE_SCHEMA, _approve, _submit, _tee_offer
from tests.support.anvil import AnvilNode
from tests.support.space import TOKENS, accept_offer, funded_user, ingest_dataset, run_job, wait_job
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess, celery_env, start_worker
from tests.unit.test_settings import production_env, run_manage

Status = Job.Status
COUNT = """
def run(tables, params):
    return {"value": float(tables["data"].num_rows)}
"""


def _children(pid: int) -> set[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        found: set[int] = set()
        for task in tasks:
            found |= {int(c) for c in (task / "children").read_text().split()}
    except OSError:
        return set()
    return found


def _sandboxes_of(pid: int) -> set[int]:
    """The worker's sandboxes: its descendants running as uid 65534."""
    found, pending = set(), [pid]
    while pending:
        for child in _children(pending.pop()):
            pending.append(child)
            try:
                status = Path(f"/proc/{child}/status").read_text()
            except OSError:
                continue
            if any(line.split()[1:2] == ["65534"] for line in status.splitlines() if line.startswith("Uid:")):
                found.add(child)
    return found


def _warm_ready(worker: WorkerProcess) -> int:
    return worker.log().count("a warm sandbox waits for a job")


def _alive(pids: set[int]) -> set[int]:
    """Those still running (a zombie waiting for its reaper has stopped)."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            alive.add(pid)
    return alive


@pytest.fixture(params=["solo", "prefork"])
def pooled_tee_worker(
    request: pytest.FixtureRequest, anvil: AnvilNode, celery_worker_process: WorkerProcess, tmp_path: Path
) -> Iterator[WorkerProcess]:
    env = celery_env() | {"TEE_POOL_SIZE": "1", "TEE_POOL_REFRESH_SECONDS": "0.5"}
    worker = start_worker(env, tmp_path / "tee-worker.log", queues="tee", pool=request.param)
    try:
        yield worker
    finally:
        worker.stop()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@requires_sandbox
def test_the_tee_worker_keeps_a_warm_sandbox_per_approved_algorithm(
    anvil: AnvilNode, pooled_tee_worker: WorkerProcess
) -> None:
    worker = pooled_tee_worker
    _, provider_api = funded_user("hospital", Role.PROVIDER)
    _, consumer_api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
    dataset = ingest_dataset(provider_api, registry_csv(200), non_personal="true", **DECLARED)
    offer = _tee_offer(provider_api, dataset)
    agreement = accept_offer(consumer_api, offer, calls=3)
    submitted = _submit(consumer_api, offer, "python", COUNT, VALUE_SCHEMA)
    assert submitted.status_code == 201, submitted.json()
    assert _sandboxes_of(worker.pid) == set()  # nothing approved, nothing warm

    algorithm = _approve(provider_api, submitted.json()["id"])
    wait_for(lambda: _warm_ready(worker) == 1, timeout=60)
    first_warm = _sandboxes_of(worker.pid)
    assert first_warm

    for ready in (1, 2):
        wait_for(lambda: _warm_ready(worker) >= ready, timeout=60)  # noqa: B023 - used at once
        response = run_job(consumer_api, agreement, "algorithm", {"algorithm": str(algorithm.id), "params": {}})
        assert response.status_code == 202, response.json()
        job = wait_job(response.json()["id"], timeout=240)
        assert job.status == Status.SETTLED, (job.failure_code, job.failure_message)
        assert job.result["value"] == 200.0
        assert f"tee job {job.id} runs in a warm sandbox" in worker.log()
    # The sandbox that was waiting at approval ran a job and is gone (single use); a fresh one waits.
    wait_for(lambda: not _alive(first_warm), timeout=30)
    wait_for(lambda: _warm_ready(worker) == 3, timeout=60)
    assert _sandboxes_of(worker.pid).isdisjoint(first_warm)

    # Revoking the approval drains its sandboxes.
    revoked = provider_api.post(f"/api/algorithms/{algorithm.id}/revoke/")
    assert revoked.status_code == 202, revoked.json()
    wait_for(lambda: Algorithm.objects.get(pk=algorithm.id).status == Algorithm.Status.REVOKED, timeout=60)
    wait_for(lambda: _sandboxes_of(worker.pid) == set(), timeout=30)

    # Approved again (a new submission of the same code), then the worker stops: nothing outlives it.
    again = _submit(consumer_api, offer, "python", COUNT + "\n", VALUE_SCHEMA)
    _approve(provider_api, again.json()["id"])
    wait_for(lambda: _warm_ready(worker) == 4, timeout=60)
    warm = _sandboxes_of(worker.pid)
    worker.stop()
    assert worker.process.returncode == 0
    assert "the tee worker's warm sandboxes are torn down (1)" in worker.log()
    assert not _alive(warm)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_host_that_cannot_sandbox_is_refused_the_tee_queue(tmp_path: Path) -> None:
    env = celery_env() | {"TEE_BWRAP": "/nonexistent/bwrap"}
    expected = refusal_message(["/nonexistent/bwrap not found: apt-get install bubblewrap"])
    with pytest.raises(AssertionError, match="worker exited at start") as caught:
        start_worker(env, tmp_path / "tee-only.log", queues="tee")
    assert expected in str(caught.value)

    # A worker serving other queues too drops tee and serves the rest.
    worker = start_worker(env, tmp_path / "mixed.log", queues="default,tee")
    try:
        assert expected in worker.log()
        worker.drain_queue("default", timeout=60)
    finally:
        worker.stop()


def test_the_custodians_deploy_check_names_what_the_host_lacks(tmp_path: Path) -> None:
    env = {k: v for k, v in production_env(tmp_path).items() if k != "VAULT_KEK"} | {
        "REDLAKE_ROLE": "custodian",
        "TEE_BWRAP": "/nonexistent/bwrap",
        **{f"REDLAKE_KEYRING_{name}": f"file:{tmp_path / name.lower()}" for name in ("DATA", "CKKS", "RECEIPT")},
    }
    result = run_manage("check", "--deploy", "--fail-level", "ERROR", env=env)
    output = result.stdout + result.stderr
    assert "redlake.E013" in output, output
    assert "/nonexistent/bwrap not found" in output
    assert result.returncode != 0

    fit = run_manage("check", "--deploy", "--fail-level", "ERROR", env={**env, "TEE_BWRAP": "bwrap"})
    assert "redlake.E013" not in fit.stdout + fit.stderr
