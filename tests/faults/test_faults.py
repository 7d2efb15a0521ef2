"""Faults while jobs flow, on the real stack (REST, real Celery worker processes, anvil, the
fault suite's private PostgreSQL and Redis): whatever breaks, every job ends settled or refunded
exactly once, chain and database reconcile, and nothing is released without a record.
(tests/integration/test_jobs.py covers an HE worker killed mid-job, the node down and the broker
unreachable from the web process.)"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from dataspace.celery import app
from dataspace.chain import gateway, outbox
from dataspace.chain.models import ChainTransaction
from dataspace.compute import jobs
from dataspace.compute.models import Job
from tests.faults import services
from tests.faults.flow import (
    IN_FLIGHT,
    Status,
    assert_each_ended_once,
    log_marks,
    logs_since,
    open_space,
    statuses,
    submit,
    tolerant,
    wait_final,
)
from tests.support.anvil import AnvilNode
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess, celery_env, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
NOT_CUSTODY = "default,ingest,chain,he"
NOT_HE = "default,ingest,chain,custody"
COPIES = 2


@pytest.fixture
def beat(settings: Any) -> None:
    """The sweepers, which the test runs in the beat's place, count a job or write stalled after
    two seconds."""
    settings.JOB_SWEEP_AFTER = 2
    settings.CHAIN_SWEEP_AFTER = 2


class Workers:
    """The test's worker processes, all stopped at its end (a stopped one woken first)."""

    def __init__(self, tmp_path: Path) -> None:
        # The suite's own Redis: emptied whole, since a purge leaves the unacknowledged messages
        # of an earlier test's killed or frozen worker, which a short visibility timeout restores.
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
        self.env = celery_env()
        self.tmp_path = tmp_path
        self.started: list[WorkerProcess] = []

    def start(self, name: str, queues: str, **env: str) -> WorkerProcess:
        worker = start_worker({**self.env, **env}, self.tmp_path / f"{name}.log", queues=queues)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.process.poll() is None:
                os.kill(worker.pid, signal.SIGCONT)
            worker.stop()


@pytest.fixture
def workers(anvil: AnvilNode, transactional_db: Any, tmp_path: Path, beat: None) -> Iterator[Workers]:
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
        connection.close()


def _kill(worker: WorkerProcess) -> None:
    os.kill(worker.pid, signal.SIGKILL)
    worker.process.wait()


def test_postgresql_restarted_mid_transition(workers: Workers) -> None:
    main = workers.start("main", NOT_HE)
    he = workers.start("he", "he")
    flow = open_space()
    job_ids = submit(flow, 4)
    # Some job between two states: the restart cuts transitions in flight.
    wait_for(tolerant(lambda: IN_FLIGHT & set(statuses(job_ids).values())), timeout=60, interval=0.01)
    marks = log_marks([main, he])
    with services.postgres().down():
        # Held down until the workers have met the missing database a few times (steps cut
        # mid-way, then their retries refused too).
        wait_for(lambda: logs_since([main, he], marks).count("OperationalError") >= 6, timeout=60, interval=0.1)
    connection.close()
    wait_final(job_ids)
    outcomes = assert_each_ended_once(flow.agreement, job_ids)
    assert outcomes[Status.SETTLED] == 4  # a database away is no job's fault: nothing refunded


def test_redis_restarted_while_jobs_flow(workers: Workers) -> None:
    main = workers.start("main", NOT_HE)
    he = workers.start("he", "he")
    flow = open_space()
    job_ids = submit(flow, 4)
    wait_for(lambda: IN_FLIGHT & set(statuses(job_ids).values()), timeout=60, interval=0.01)
    # Redis keeps nothing here (--save ""): every queued and unacknowledged message is lost.
    with services.redis().down():
        job_ids += submit(flow, 2)  # accepted while the broker is away; their messages are not sent
    wait_final(job_ids)
    outcomes = assert_each_ended_once(flow.agreement, job_ids)
    assert outcomes[Status.SETTLED] == 6
    assert main.process.poll() is None
    assert he.process.poll() is None
    # What a worker logs between tasks (the broker lost and found) names no task or job.
    lost = [line for w in (main, he) for line in w.log().splitlines() if "Connection to broker lost" in line]
    assert lost
    assert not [line for line in lost if '"task_id"' in line or '"job_id"' in line], lost[0]


def test_custodian_killed_mid_release(workers: Workers) -> None:
    workers.start("main", NOT_CUSTODY)
    custodian = workers.start("custodian", "custody")
    flow = open_space()
    [job_id] = submit(flow, 1)
    # The custodian counts its attempt, then verifies, decrypts and records: frozen at once, the
    # release is still under way (its transaction not committed) and is then killed.
    wait_for(lambda: Job.objects.filter(pk=job_id, release_attempts__gte=1).exists(), timeout=120, interval=0.002)
    os.kill(custodian.pid, signal.SIGSTOP)
    job = Job.objects.get(pk=job_id)
    assert job.status == Status.COMPUTED, job.status
    _kill(custodian)
    job.refresh_from_db()
    assert (job.status, job.result, job.receipt, job.settle_tx_id) == (Status.COMPUTED, None, None, None)
    assert not ChainTransaction.objects.filter(kind="usage_settle").exists()
    # Its message is unacknowledged until Redis' visibility timeout (hours): the job sweeper
    # re-sends the release to the custodian that replaces it.
    workers.start("custodian-2", "custody")
    wait_final([job_id])
    assert_each_ended_once(flow.agreement, [job_id])
    job.refresh_from_db()
    assert (job.status, job.release_attempts) == (Status.SETTLED, 2)


def test_every_step_delivered_twice(workers: Workers) -> None:
    """Each step's task of each job is sent twice more the moment the job reaches that step, to
    two workers serving every queue: copies run concurrently with each other and the original."""
    workers.start("a", NOT_HE + ",he")
    workers.start("b", NOT_HE + ",he")
    flow = open_space()
    job_ids = submit(flow, 3)
    done = threading.Event()
    sent: set[tuple[str, str]] = set()

    def duplicate() -> None:
        try:
            while not done.is_set():
                for job_id, status in statuses(job_ids).items():
                    if status in jobs.STEP_TASKS and (str(job_id), status) not in sent:
                        sent.add((str(job_id), status))
                        for _ in range(COPIES):
                            app.send_task(jobs.step_task(Status(status), job_id), args=[str(job_id)])
                done.wait(0.005)
        finally:
            connection.close()

    duplicator = threading.Thread(target=duplicate)
    duplicator.start()
    try:
        wait_final(job_ids)
    finally:
        done.set()
        duplicator.join()
    steps = {status for _, status in sent}
    assert {Status.REQUESTED, Status.AUTHORISED, Status.COMPUTED, Status.RELEASED} <= steps, steps
    outcomes = assert_each_ended_once(flow.agreement, job_ids)
    assert outcomes[Status.SETTLED] == 3


def test_task_outliving_the_visibility_timeout(workers: Workers) -> None:
    """An HE worker whose computation outlives Redis' visibility timeout (frozen with SIGSTOP,
    standing for a slow run): another worker on a short timeout gets the same message again and
    computes while the first is woken and finishes its own run too, after the second's result was
    recorded; only then does the custodian release."""
    workers.start("main", "default,ingest,chain")
    short = {"CELERY_VISIBILITY_TIMEOUT": "2"}
    first = workers.start("he-1", "he", **short)
    flow = open_space()
    [job_id] = submit(flow, 1)
    wait_for(lambda: Job.objects.filter(pk=job_id, compute_attempts__gte=1).exists(), timeout=120, interval=0.002)
    os.kill(first.pid, signal.SIGSTOP)
    assert Job.objects.get(pk=job_id).status == Status.AUTHORISED
    # A worker starting restores every message unacknowledged for longer than its visibility
    # timeout; starting takes longer than the 2 s.
    second = workers.start("he-2", "he", **short)
    wait_for(lambda: Job.objects.filter(pk=job_id, status=Status.COMPUTED).exists(), timeout=60, interval=0.01)
    [task_id] = {line.split("[")[1].split("]")[0] for line in second.log().splitlines() if "compute_job[" in line}
    assert f"compute_job[{task_id}] received" in first.log()  # the same message, delivered twice
    os.kill(first.pid, signal.SIGCONT)  # the first run goes on, its result now too late
    wait_for(lambda: f"compute_job[{task_id}] succeeded" in first.log(), timeout=60)
    workers.start("custodian", "custody")
    wait_final([job_id])
    assert_each_ended_once(flow.agreement, [job_id])
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.compute_attempts, job.release_attempts) == (Status.SETTLED, 2, 1)


def test_signed_write_never_broadcast_is_sent_once(workers: Workers) -> None:
    """The chain signer dies between signing a settlement and sending it: the outbox holds the
    signed bytes, and the sweepers send exactly those, once."""
    workers.start("main", "default,ingest,he")
    signer = workers.start("signer", "chain")
    flow = open_space()
    [job_id] = submit(flow, 1)
    # The custodian starts only once the signer is gone: the settlement's write is queued after.
    wait_for(lambda: Job.objects.filter(pk=job_id, status=Status.COMPUTED).exists(), timeout=120)
    signer.stop()
    workers.start("custodian", "custody")
    job = wait_for(lambda: Job.objects.filter(pk=job_id, status=Status.RELEASED).first(), timeout=120)
    assert job.settle_tx_id is not None
    assert ChainTransaction.objects.get(pk=job.settle_tx_id).status == ChainTransaction.Status.PENDING
    # What the signer did before it died: the write signed under its nonce lock, bytes and hash
    # saved, nothing sent. The messages it held die with it.
    outbox._sign(ChainTransaction.objects.get(pk=job.settle_tx_id))
    with app.connection_for_write() as conn, conn.channel() as channel:
        channel.queue_purge("chain")
    signed = ChainTransaction.objects.get(pk=job.settle_tx_id)
    assert signed.status == ChainTransaction.Status.SIGNED
    assert signed.raw_tx
    w3 = gateway.connected_web3()
    assert w3.eth.get_transaction_count(signed.sender, "pending") == signed.nonce  # not on the node
    workers.start("signer-2", "chain")
    wait_final([job_id])
    assert_each_ended_once(flow.agreement, [job_id])
    sent = ChainTransaction.objects.get(pk=job.settle_tx_id)
    assert (sent.tx_hash, sent.nonce, sent.attempts) == (signed.tx_hash, signed.nonce, 1)  # never signed again
    on_chain = w3.eth.get_transaction(sent.tx_hash)
    assert on_chain["nonce"] == signed.nonce
    assert bytes(on_chain["hash"]).hex() == sent.tx_hash[2:]
    assert w3.eth.get_transaction_count(signed.sender) == signed.nonce + 1  # and nothing after it
