"""Jobs driven through a data space while something breaks, and the one verdict every fault test
ends with: each job settled or refunded exactly once, the chain agreeing, nothing released
without a record."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from django.core.management import call_command
from django.db import InterfaceError, OperationalError, connection
from rest_framework.test import APIClient

from dataspace.accounts.models import Role
from dataspace.chain import agents
from dataspace.chain import tasks as chain_tasks
from dataspace.chain.models import ChainTransaction
from dataspace.compute import tasks
from dataspace.compute.models import Job
from dataspace.demo.synthetic import registry_csv_chunks
from dataspace.policies.models import Agreement
from tests.integration.test_jobs import DECLARED
from tests.support.space import TOKENS, accept_offer, funded_user, ingest_dataset, publish_offer, run_job
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

ROWS = 2000
Status = Job.Status
FINAL = {Status.SETTLED, Status.REFUNDED, Status.WITHHELD, Status.REJECTED}
IN_FLIGHT = {Status.AUTHORISED, Status.COMPUTED, Status.RELEASED, Status.FAILED}
# How often the test plays the beat's part (the job and outbox sweepers): faster than the beat's
# 30 s so the suite stays short; the sweepers themselves are the product's.
SWEEP_EVERY_SECONDS = 3.0
T = TypeVar("T")


@dataclass(frozen=True)
class Flow:
    consumer_api: APIClient
    agreement: Agreement


def open_space(calls: int = 20) -> Flow:
    """A provider's dataset (non-personal: exact answers), an offer and a consumer's agreement,
    all through the REST doors; needs a worker serving default, ingest and chain."""
    _, provider_api = funded_user("hospital", Role.PROVIDER)
    _, consumer_api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
    content = b"".join(registry_csv_chunks(ROWS))
    dataset = ingest_dataset(provider_api, content, non_personal="true", **DECLARED)
    agreement = accept_offer(consumer_api, publish_offer(provider_api, dataset), calls=calls)
    return Flow(consumer_api, agreement)


def submit(flow: Flow, count: int) -> list[str]:
    """``count`` jobs of two kinds, accepted (202) and queued."""
    asks = [("mean", {"column": "cost"}), ("group_by", {"by": "region", "aggregate": "mean", "column": "bmi"})]
    ids = []
    for index in range(count):
        operation, params = asks[index % len(asks)]
        response = run_job(flow.consumer_api, flow.agreement, operation, params)
        assert response.status_code == 202, response.json()
        ids.append(response.json()["id"])
    return ids


def tolerant(read: Callable[[], T]) -> Callable[[], T | None]:
    """``read``, answering None while the database is away (and dropping the broken connection so
    the next call opens a fresh one)."""

    def call() -> T | None:
        try:
            return read()
        except (OperationalError, InterfaceError):
            connection.close()
            return None

    return call


def statuses(job_ids: Iterable[str]) -> dict[str, str]:
    return dict(Job.objects.filter(pk__in=list(job_ids)).values_list("pk", "status"))  # type: ignore[arg-type]


def sweep() -> None:
    """What the beat sends every half minute: the job and chain-write sweepers."""
    tasks.sweep_jobs()
    chain_tasks.sweep_chain_writes()


def wait_final(job_ids: list[str], *, timeout: float = 300) -> None:
    """Waits until every job has an outcome, playing the beat meanwhile (the sweepers re-send what
    a fault lost). The test's ``settings`` must make JOB_SWEEP_AFTER and CHAIN_SWEEP_AFTER short."""
    last_sweep = [time.monotonic()]

    def finished() -> bool:
        if time.monotonic() - last_sweep[0] >= SWEEP_EVERY_SECONDS:
            last_sweep[0] = time.monotonic()
            sweep()
        return set(statuses(job_ids).values()) <= FINAL

    wait_for(tolerant(finished), timeout=timeout, interval=0.2)


def logs_since(workers: Iterable[WorkerProcess], marks: dict[int, int]) -> str:
    return "".join(worker.log()[marks.get(worker.pid, 0) :] for worker in workers)


def log_marks(workers: Iterable[WorkerProcess]) -> dict[int, int]:
    return {worker.pid: len(worker.log()) for worker in workers}


def _usage(job: Job) -> agents.OnChainUsage:
    return agents.UsageAgreementsAgent().usage(bytes.fromhex(job.chain_job_id[2:]))


def assert_each_ended_once(agreement: Agreement, job_ids: list[str]) -> dict[str, int]:
    """Every job settled or refunded exactly once, on chain as in the database; a result only
    where its settlement (with that result's hash) is confirmed; the audit reconciles."""
    connection.close()  # a fault may have left this process's connection broken
    outcomes: dict[str, int] = {Status.SETTLED: 0, Status.REFUNDED: 0}
    for job in Job.objects.filter(pk__in=job_ids):
        assert job.status in outcomes, (job.id, job.status, job.failure_code, job.failure_message)
        settles = ChainTransaction.objects.filter(kind="usage_settle", idempotency_key=f"job-settle:{job.id}")
        refunds = ChainTransaction.objects.filter(kind="usage_refund", idempotency_key=f"job-refund:{job.id}")
        confirmed = ChainTransaction.Status.CONFIRMED
        if job.status == Status.SETTLED:
            assert (settles.count(), refunds.count()) == (1, 0), job.id
            settle = settles.get()
            assert settle.status == confirmed
            assert _usage(job).status == agents.JobStatus.SETTLED
            # The released answer is the one whose commitment the chain holds.
            assert job.result is not None
            assert job.receipt is not None
            assert settle.args[1] == job.result_hash
        else:
            assert (refunds.count(), settles.filter(status=confirmed).count()) == (1, 0), job.id
            assert refunds.get().status == confirmed
            assert _usage(job).status == agents.JobStatus.REFUNDED
            assert job.result is None
        outcomes[job.status] += 1
    assert sum(outcomes.values()) == len(job_ids)
    # No chain write of a job twice, and none for a job that is not one of these.
    assert ChainTransaction.objects.filter(kind="usage_settle").count() == outcomes[Status.SETTLED]
    assert ChainTransaction.objects.filter(kind="usage_refund").count() == outcomes[Status.REFUNDED]
    agreement.refresh_from_db()
    assert agreement.chain_agreement_id is not None
    state = agents.UsageAgreementsAgent().agreement(agreement.chain_agreement_id)
    assert (int(state["calls_used"]), int(state["calls_settled"])) == (outcomes[Status.SETTLED],) * 2
    assert agreement.calls_reserved == outcomes[Status.SETTLED]
    out = io.StringIO()
    call_command("audit", "reconcile", stdout=out)
    assert "chain and database agree" in out.getvalue(), out.getvalue()
    return outcomes
