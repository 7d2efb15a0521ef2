"""ISSUE-13: the ``tee`` engine end to end, through REST, against a real anvil, real Celery worker
processes (one serving the ``tee`` queue: the real sandbox, bubblewrap, seccomp, cgroups), the
configured database and broker: algorithms submitted and approved on chain, run under an
agreement, released with the measurement and TEE type in the receipt, settled (metered) on chain;
an escape attempt, a revoked approval and an unapproved measurement end refunded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn
from rest_framework.test import APIClient

from dataspace.accounts.models import Role, Wallet
from dataspace.audit.reconcile import reconcile
from dataspace.chain import agents, gateway
from dataspace.chain.models import ChainTransaction
from dataspace.compute import receipts, tasks
from dataspace.compute.models import Algorithm, AttestationNonce, Job
from dataspace.policies.models import Offer
from tests.enclaves.conftest import requires_sandbox
from tests.integration.test_jobs import DECLARED, registry_csv
from tests.support.anvil import AnvilNode
from tests.support.space import (
    PRICE,
    TOKENS,
    accept_offer,
    close_to,
    funded_user,
    ingest_dataset,
    publish_offer,
    run_job,
    table_of,
    wait_job,
)
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess, celery_env, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True), requires_sandbox]
Status = Job.Status
ROWS = 600

LOGISTIC = """
import numpy as np
from sklearn.linear_model import LogisticRegression

def run(tables, params):
    t = tables["data"]
    x = np.column_stack([t.column(c).to_numpy() for c in params["features"]])
    y = np.array([d == params["positive"] for d in t.column("diagnosis").to_pylist()], dtype=np.int64)
    model = LogisticRegression(C=params["c"], max_iter=1000).fit(x, y)
    return {"coefficients": model.coef_[0], "intercept": float(model.intercept_[0])}
"""
LOGISTIC_SCHEMA = {
    "type": "object",
    "properties": {
        "coefficients": {"type": "array", "items": {"type": "number"}, "maxItems": 8},
        "intercept": {"type": "number"},
    },
    "required": ["coefficients", "intercept"],
}
GROUP_BY = """
SELECT region, count(*) AS patients, round(avg(cost), 6) AS mean_cost
FROM data WHERE age >= $min_age GROUP BY region ORDER BY region
"""
GROUP_BY_SCHEMA = {
    "type": "object",
    "properties": {
        "rows": {
            "type": "array",
            "maxItems": 20,
            "items": {
                "type": "object",
                "properties": {
                    "region": {"type": "string", "maxLength": 32},
                    "patients": {"type": "integer"},
                    "mean_cost": {"type": "number"},
                },
            },
        }
    },
}
BUSY_LOOP = """
import time

def run(tables, params):
    start = time.process_time()
    spins = 0
    while time.process_time() - start < params["seconds"]:
        spins += 1
    return {"value": float(tables["data"].num_rows)}
"""
ESCAPE = """
import socket

def run(tables, params):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(("127.0.0.1", 5432))
    return {"value": 1.0}
"""
VALUE_SCHEMA = {"type": "object", "properties": {"value": {"type": "number"}}, "required": ["value"]}
RATE = 10**18  # one token per CPU-second


@pytest.fixture
def tee_worker(anvil: AnvilNode, celery_worker_process: WorkerProcess, tmp_path: Path) -> Iterator[WorkerProcess]:
    """The custodian's ``tee`` worker (SIMULATED backend): launcher and key broker in one process."""
    worker = start_worker(celery_env(), tmp_path / "tee-worker.log", queues="tee")
    try:
        yield worker
    finally:
        worker.stop()


def _submit(api: APIClient, offer: Offer, kind: str, source: str, schema: dict[str, Any], **extra: Any) -> Any:
    body = {"offer": str(offer.id), "kind": kind, "source": source, "output_schema": schema, "max_output_bytes": 8192}
    return api.post("/api/algorithms/", {**body, **extra}, format="json")


def _approve(provider_api: APIClient, algorithm_id: str) -> Algorithm:
    response = provider_api.post(f"/api/algorithms/{algorithm_id}/approve/", {}, format="json")
    assert response.status_code == 202, response.json()
    wait_for(lambda: Algorithm.objects.get(pk=algorithm_id).status != Algorithm.Status.APPROVING, timeout=60)
    algorithm = Algorithm.objects.get(pk=algorithm_id)
    assert algorithm.status == Algorithm.Status.APPROVED, algorithm.reason
    return algorithm


def _events(name: str) -> list[dict[str, Any]]:
    contract = gateway.contract("UsageAgreements")
    return [dict(log["args"]) for log in contract.events[name]().get_logs(from_block=0)]


def _tee_offer(provider_api: APIClient, dataset: Any, **terms: Any) -> Offer:
    return publish_offer(
        provider_api, dataset, operations=["algorithm"], allow_sandbox=True, memory_limit_bytes=768 * 2**20, **terms
    )


def test_approved_algorithms_run_in_the_sandbox_and_settle(anvil: AnvilNode, tee_worker: WorkerProcess) -> None:
    provider, provider_api = funded_user("hospital", Role.PROVIDER)
    _, consumer_api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
    content = registry_csv(ROWS)
    dataset = ingest_dataset(provider_api, content, non_personal="true", **DECLARED)
    offer = _tee_offer(provider_api, dataset)
    assert {c["leftOperand"]: c["rightOperand"] for c in offer.policy["permission"][0]["constraint"]}[
        "redlake:allowSandbox"
    ] is True
    agreement = accept_offer(consumer_api, offer, calls=10)

    # Bad bundles, clear 4xx.
    bad = _submit(consumer_api, offer, "python", "x = 1\n", VALUE_SCHEMA)
    assert bad.status_code == 400, bad.json()
    assert bad.json()["error"]["code"] == "algorithm_invalid"
    bad = _submit(consumer_api, offer, "python", LOGISTIC, LOGISTIC_SCHEMA, lockfile={"scikit-learn": "0.0.1"})
    assert bad.json()["error"]["code"] == "algorithm_invalid"

    lockfile = {"scikit-learn": sklearn.__version__, "numpy": np.__version__}
    logistic = _submit(consumer_api, offer, "python", LOGISTIC, LOGISTIC_SCHEMA, lockfile=lockfile, name="logit")
    assert logistic.status_code == 201, logistic.json()
    assert logistic.json()["status"] == "pending"
    sql = _submit(consumer_api, offer, "sql", GROUP_BY, GROUP_BY_SCHEMA)
    assert sql.status_code == 201, sql.json()
    escape = _submit(consumer_api, offer, "python", ESCAPE, VALUE_SCHEMA)
    assert escape.status_code == 201, escape.json()

    # Not approved yet: the allow-list is empty, so nothing runs.
    params = {"features": ["age", "bmi", "systolic_bp"], "positive": "hypertension", "c": 1.0}
    refused = run_job(consumer_api, agreement, "algorithm", {"algorithm": logistic.json()["id"], "params": params})
    assert refused.status_code == 403, refused.json()
    assert refused.json()["error"]["code"] == "algorithm_not_approved"

    # Others' ids are not found; the provider reads the code and decides.
    _, stranger_api = funded_user("stranger", Role.CONSUMER)
    assert stranger_api.get(f"/api/algorithms/{logistic.json()['id']}/").status_code == 404
    listed = provider_api.get("/api/algorithms/").json()["results"]
    assert {a["id"] for a in listed} == {logistic.json()["id"], sql.json()["id"], escape.json()["id"]}
    assert any(a["bundle"]["source"] == LOGISTIC for a in listed)
    assert consumer_api.post(f"/api/algorithms/{sql.json()['id']}/approve/").status_code == 403
    for algorithm_id in (logistic.json()["id"], sql.json()["id"], escape.json()["id"]):
        algorithm = _approve(provider_api, algorithm_id)
        assert agents.AlgorithmApprovalsAgent().is_approved(
            offer_id=offer.chain_offer_id,  # type: ignore[arg-type]
            measurement=bytes.fromhex(algorithm.measurement),
            tee_type=agents.TeeBit.SANDBOX,
        )
    again = provider_api.post(f"/api/algorithms/{sql.json()['id']}/approve/")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "algorithm_state_invalid"

    table = table_of(content).to_pandas()
    # Logistic regression with scikit-learn, in the sandbox, against the same fit here.
    response = run_job(consumer_api, agreement, "algorithm", {"algorithm": logistic.json()["id"], "params": params})
    assert response.status_code == 202, response.json()
    job = wait_job(response.json()["id"], timeout=240)
    assert job.status == Status.SETTLED, (job.failure_code, job.failure_message)
    body = consumer_api.get(f"/api/jobs/{job.id}/").json()
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=1000).fit(
        table[params["features"]].to_numpy(), (table["diagnosis"] == "hypertension").to_numpy().astype(int)
    )
    expected = {"coefficients": model.coef_[0].tolist(), "intercept": float(model.intercept_[0])}
    assert close_to(body["result"], expected, 1e-6), (body["result"], expected)
    receipt = body["receipt"]
    assert receipt["engine"] == "tee"
    assert receipt["tee"]["tee_type"] == "sandbox"
    assert receipt["tee"]["label"] == "SIMULATED"
    assert receipt["tee"]["measurement"] == logistic.json()["measurement"]
    assert body["tee"]["label"] == "SIMULATED"
    assert receipts.receipt_signer(receipt) == receipts.custodian().address
    usage = agents.UsageAgreementsAgent().usage(bytes.fromhex(job.chain_job_id[2:]))
    assert usage.status == agents.JobStatus.SETTLED
    settled = {"0x" + bytes(e["jobId"]).hex(): e for e in _events("JobSettled")}
    assert bytes(settled[job.chain_job_id]["attestationHash"]).hex() == receipt["tee"]["attestation_hash"]
    # One nonce, consumed, the key released once to the attested enclave.
    nonces = list(AttestationNonce.objects.filter(job=job))
    assert len(nonces) == 1
    assert nonces[0].consumed_at is not None
    assert nonces[0].released_at is not None
    assert nonces[0].attestation_hash == receipt["tee"]["attestation_hash"]

    # A DuckDB group-by.
    response = run_job(consumer_api, agreement, "algorithm", {"algorithm": sql.json()["id"], "params": {"min_age": 40}})
    job = wait_job(response.json()["id"], timeout=240)
    assert job.status == Status.SETTLED, (job.failure_code, job.failure_message)
    older = table[table["age"] >= 40]
    expected_rows = [
        {"region": region, "patients": len(group), "mean_cost": round(float(group["cost"].mean()), 6)}
        for region, group in sorted(older.groupby("region"), key=lambda item: item[0])
    ]
    assert close_to(consumer_api.get(f"/api/jobs/{job.id}/").json()["result"], {"rows": expected_rows}, 1e-9)

    # An escape attempt (an AF_INET socket): killed by seccomp, FAILED with a fixed reason, refunded.
    response = run_job(consumer_api, agreement, "algorithm", {"algorithm": escape.json()["id"], "params": {}})
    job = wait_job(response.json()["id"], timeout=240)
    assert job.status == Status.REFUNDED
    assert job.failure_code == "tee_job_failed"
    assert job.failure_message.startswith("sandbox_violation")
    assert "5432" not in job.failure_message
    usage = agents.UsageAgreementsAgent().usage(bytes.fromhex(job.chain_job_id[2:]))
    assert usage.status == agents.JobStatus.REFUNDED

    # A revoked approval refunds the job queued for it (the tee worker is stopped to keep it queued).
    tee_worker.stop()
    response = run_job(consumer_api, agreement, "algorithm", {"algorithm": sql.json()["id"], "params": {"min_age": 1}})
    queued = response.json()["id"]
    wait_for(lambda: Job.objects.get(pk=queued).status == Status.AUTHORISED, timeout=60)
    revoked = provider_api.post(f"/api/algorithms/{sql.json()['id']}/revoke/")
    assert revoked.status_code == 202, revoked.json()
    job = wait_job(queued)
    assert job.status == Status.REFUNDED
    assert job.failure_code == "algorithm_revoked"
    wait_for(lambda: Algorithm.objects.get(pk=sql.json()["id"]).status == Algorithm.Status.REVOKED, timeout=60)
    assert not agents.AlgorithmApprovalsAgent().is_approved(
        offer_id=offer.chain_offer_id,  # type: ignore[arg-type]
        measurement=bytes.fromhex(sql.json()["measurement"]),
        tee_type=agents.TeeBit.SANDBOX,
    )
    refused = run_job(consumer_api, agreement, "algorithm", {"algorithm": sql.json()["id"], "params": {"min_age": 1}})
    assert refused.json()["error"]["code"] == "algorithm_not_approved"

    # An unapproved measurement reaches the custodian (revoked on chain behind the platform's
    # back, after the job was authorised): the evidence is refused, no key is released.
    response = run_job(consumer_api, agreement, "algorithm", {"algorithm": logistic.json()["id"], "params": params})
    queued = response.json()["id"]
    wait_for(lambda: Job.objects.get(pk=queued).status == Status.AUTHORISED, timeout=60)
    provider_wallet = Wallet.objects.get(user=provider)
    tx = agents.AlgorithmApprovalsAgent().revoke(
        key="behind-the-back",
        provider=provider_wallet.address,
        offer_id=offer.chain_offer_id,  # type: ignore[arg-type]
        measurement=bytes.fromhex(logistic.json()["measurement"]),
    )
    wait_for(lambda: ChainTransaction.objects.get(pk=tx.pk).status == ChainTransaction.Status.CONFIRMED, timeout=60)
    # The same environment, without celery_env()'s purge: the job's compute message is queued.
    worker = start_worker(tee_worker.env, tee_worker.log_path.with_name("tee-worker-2.log"), queues="tee")
    try:
        job = wait_job(queued, timeout=240)
    finally:
        worker.stop()
    assert job.status == Status.REFUNDED
    assert job.failure_code == "attestation_refused"
    assert "measurement_not_allowed" in job.failure_message
    nonce = AttestationNonce.objects.get(job=job)
    assert nonce.consumed_at is not None
    assert nonce.released_at is None
    assert nonce.refusal == "measurement_not_allowed"
    report = reconcile()
    assert report.ok, report.mismatches


def test_a_metered_busy_loop_is_billed_for_its_cpu_seconds(anvil: AnvilNode, tee_worker: WorkerProcess) -> None:
    _, provider_api = funded_user("hospital", Role.PROVIDER)
    consumer, consumer_api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
    dataset = ingest_dataset(provider_api, registry_csv(200), non_personal="true", **DECLARED)
    offer = _tee_offer(provider_api, dataset, compute_rate=RATE, max_cpu_millis=10_000, min_cohort=10)
    assert offer.max_cpu_millis == 10_000
    agreement = accept_offer(consumer_api, offer, calls=2)
    maximum = PRICE + RATE * 10
    assert int(agreement.amount) == 2 * maximum
    algorithm = _submit(consumer_api, offer, "python", BUSY_LOOP, VALUE_SCHEMA)
    assert algorithm.status_code == 201, algorithm.json()
    _approve(provider_api, algorithm.json()["id"])
    response = run_job(
        consumer_api, agreement, "algorithm", {"algorithm": algorithm.json()["id"], "params": {"seconds": 2.0}}
    )
    job = wait_job(response.json()["id"], timeout=240)
    assert job.status == Status.SETTLED, (job.failure_code, job.failure_message)
    metered = {"0x" + bytes(e["jobId"]).hex(): e for e in _events("ComputeMetered")}[job.chain_job_id]
    assert 1800 <= int(metered["cpuMillis"]) <= 2200, metered
    charged = PRICE + RATE * int(metered["cpuMillis"]) // 1000
    assert int(metered["charged"]) == charged
    assert int(metered["returned"]) == maximum - charged
    receipt = consumer_api.get(f"/api/jobs/{job.id}/").json()["receipt"]
    assert receipt["metering"]["cpu_millis"] == int(metered["cpuMillis"])
    assert receipt["metering"]["bytes_read"] > 0
    assert receipt["metering"]["peak_memory_bytes"] > 0
    earnings = provider_api.get("/api/earnings/").json()
    assert int(earnings["withdrawable"]) == charged
    consumer_wallet = Wallet.objects.get(user=consumer)
    assert agents.UsageAgreementsAgent().withdrawable(consumer_wallet.address) == maximum - charged
    report = reconcile()
    assert report.ok, report.mismatches
    assert report.checked["compute_metered"] == 1


MEAN_AGE = """
def run(tables, params):
    ages = tables["data"].column("age").to_pylist()
    return {"mean_age": sum(ages) / len(ages), "share_over_60": sum(a > 60 for a in ages) / len(ages)}
"""
MEAN_AGE_SCHEMA = {
    "type": "object",
    "properties": {
        "mean_age": {"type": "number", "minimum": 0, "maximum": 120},
        "share_over_60": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["mean_age", "share_over_60"],
}


def test_a_personal_dataset_answers_clamped_and_noised_and_sandbox_needs_the_offers_consent(
    anvil: AnvilNode, tee_worker: WorkerProcess
) -> None:
    _, provider_api = funded_user("hospital", Role.PROVIDER)
    _, consumer_api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
    content = registry_csv(ROWS)
    dataset = ingest_dataset(provider_api, content, **DECLARED)  # personal: every answer noised
    assert not dataset.non_personal

    # An offer that does not allow sandbox evidence runs nothing here: no approval, no job.
    closed = publish_offer(provider_api, dataset, operations=["algorithm"])
    assert closed.allow_sandbox is False
    closed_agreement = accept_offer(consumer_api, closed, calls=1)
    algorithm = _submit(consumer_api, closed, "python", MEAN_AGE, MEAN_AGE_SCHEMA)
    assert algorithm.status_code == 201, algorithm.json()
    refused = provider_api.post(f"/api/algorithms/{algorithm.json()['id']}/approve/")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "sandbox_not_allowed"
    refused = run_job(consumer_api, closed_agreement, "algorithm", {"algorithm": algorithm.json()["id"]}, epsilon=0.5)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "sandbox_not_allowed"

    offer = _tee_offer(provider_api, dataset)
    agreement = accept_offer(consumer_api, offer, calls=2)
    # Unbounded numbers cannot be noised: refused at submission.
    unbounded = _submit(consumer_api, offer, "python", MEAN_AGE, VALUE_SCHEMA)
    assert unbounded.status_code == 400
    assert unbounded.json()["error"]["code"] == "algorithm_invalid"
    algorithm = _submit(consumer_api, offer, "python", MEAN_AGE, MEAN_AGE_SCHEMA)
    assert algorithm.status_code == 201, algorithm.json()
    _approve(provider_api, algorithm.json()["id"])
    response = run_job(consumer_api, agreement, "algorithm", {"algorithm": algorithm.json()["id"]}, epsilon=0.5)
    assert response.status_code == 202, response.json()
    job = wait_job(response.json()["id"], timeout=240)
    assert job.status == Status.SETTLED, (job.failure_code, job.failure_message)
    body = consumer_api.get(f"/api/jobs/{job.id}/").json()
    assert 0 <= body["result"]["mean_age"] <= 120
    assert 0 <= body["result"]["share_over_60"] <= 1
    noise = body["receipt"]["noise"]
    assert noise["mechanism"].startswith("gaussian")
    assert noise["epsilon"] == 0.5
    # sqrt(d) * (hi - lo) / sqrt(2 rho), d = 2: the scale follows from the bounds, never the data.
    assert noise["scales"]["$.mean_age"] == pytest.approx(120 / 1 * noise["scales"]["$.share_over_60"], rel=1e-6)
    assert body["receipt"]["tee"]["label"] == "SIMULATED"


def test_a_tee_job_no_capable_worker_takes_is_refunded(
    anvil: AnvilNode, celery_worker_process: WorkerProcess, settings: Any
) -> None:
    """No worker serves the ``tee`` queue (none runs, or each refused it on a host that cannot
    sandbox): the sweeper fails the job after TEE_UNCLAIMED_AFTER and the call is refunded."""
    _, provider_api = funded_user("hospital", Role.PROVIDER)
    _, consumer_api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
    dataset = ingest_dataset(provider_api, registry_csv(200), non_personal="true", **DECLARED)
    offer = _tee_offer(provider_api, dataset)
    agreement = accept_offer(consumer_api, offer, calls=2)
    algorithm = _submit(consumer_api, offer, "python", BUSY_LOOP, VALUE_SCHEMA)
    assert algorithm.status_code == 201, algorithm.json()
    _approve(provider_api, algorithm.json()["id"])
    response = run_job(
        consumer_api, agreement, "algorithm", {"algorithm": algorithm.json()["id"], "params": {"seconds": 0.1}}
    )
    assert response.status_code == 202, response.json()
    job_id = response.json()["id"]
    wait_for(lambda: Job.objects.get(pk=job_id).status == Status.AUTHORISED, timeout=60)

    settings.TEE_UNCLAIMED_AFTER = 3600
    tasks.sweep_jobs()
    assert Job.objects.get(pk=job_id).status == Status.AUTHORISED  # not yet: it may still be taken
    settings.TEE_UNCLAIMED_AFTER = -1
    tasks.sweep_jobs()
    job = wait_job(job_id, timeout=120)
    assert job.status == Status.REFUNDED
    assert job.failure_code == "tee_unavailable"
    assert job.compute_attempts == 0
    usage = agents.UsageAgreementsAgent().usage(bytes.fromhex(job.chain_job_id[2:]))
    assert usage.status == agents.JobStatus.REFUNDED
    body = consumer_api.get(f"/api/jobs/{job_id}/").json()
    assert body["result"] is None
    assert body["failure"]["code"] == "tee_unavailable"
    report = reconcile()
    assert report.ok, report.mismatches
