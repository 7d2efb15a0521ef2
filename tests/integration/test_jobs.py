"""The whole mission end to end, through REST, against a real anvil, a real Celery worker process
and the configured database and broker: upload, offer, agreement, encrypted computations, chain
settlement, withdrawal, reconciliation; then refusals, concurrency and faults."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from django.core.management import call_command
from django.db import connection

from dataspace.accounts.models import Role, Wallet
from dataspace.accounts.services import api_token_issue, wallet_private_key
from dataspace.audit.models import ReconcileReport
from dataspace.canonical import canonical_json
from dataspace.chain import agents, eip712, gateway, outbox
from dataspace.chain.encoding import job_chain_id, label_hash, params_hash
from dataspace.chain.models import ChainTransaction
from dataspace.compute import jobs, keystore, receipts, tasks, warm_up
from dataspace.compute.he.keys import load_public_context
from dataspace.compute.he.operations import get_operation
from dataspace.compute.he.references import CKKS_RELATIVE_TOLERANCE
from dataspace.compute.models import EncryptedStore, HEKey, Job
from dataspace.demo.synthetic import REGISTRY_ENCRYPTION, registry_csv_chunks, registry_frames
from dataspace.policies.models import Agreement
from dataspace.vault import blobs
from tests.support.anvil import AnvilNode, free_port
from tests.support.space import (
    PRICE,
    TOKENS,
    Space,
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
from tests.support.workers import WorkerProcess, celery_env, gunicorn_command, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROWS = 3000
TOLERANCE = max(CKKS_RELATIVE_TOLERANCE, 1e-5)  # CKKS error, then 6 significant digits of rounding
Status = Job.Status
# The registry's bounds and buckets, as its provider declares them at upload: a personal dataset's
# numeric columns are summed only within declared (or privately estimated) bounds.
# The registry as its provider declares it: bounds and bucket edges, the categories it makes public.
DECLARED = {"encryption": json.dumps(REGISTRY_ENCRYPTION), "public_value_columns": "region,sex,diagnosis,clinic"}


def registry_csv(rows: int = ROWS, *, rare_clinic_rows: int = 0) -> bytes:
    """The synthetic registry; optionally a `clinic` column where one clinic has only a few rows."""
    frame = pd.concat(list(registry_frames(rows)))
    if rare_clinic_rows:
        clinics = np.array(["a", "b", "c", "d"])[np.arange(rows) % 4]
        clinics[:rare_clinic_rows] = "rare"
        frame["clinic"] = clinics
        frame.loc[frame.index[:rare_clinic_rows], "clinic"] = "rare"
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, date_format="%Y-%m-%d")
    return buffer.getvalue().encode()


def usage_agent() -> agents.UsageAgreementsAgent:
    return agents.UsageAgreementsAgent()


def calls_on_chain(agreement: Agreement) -> tuple[int, int]:
    agreement.refresh_from_db()
    assert agreement.chain_agreement_id is not None
    state = usage_agent().agreement(agreement.chain_agreement_id)
    return int(state["calls_used"]), int(state["calls_settled"])


def test_the_whole_story(anvil: AnvilNode, celery_worker_process: WorkerProcess) -> None:
    provider, provider_api = funded_user("hospital", Role.PROVIDER)
    _, consumer_api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
    content = b"".join(registry_csv_chunks(ROWS))
    # Non-personal: the answers are exact, so they are checked against the plaintext reference
    # (noised answers: tests/privacy).
    dataset = ingest_dataset(provider_api, content, non_personal="true", **DECLARED)
    # Workers get public contexts only; consumers see what can be computed, never the scales.
    contexts = keystore.public_contexts(EncryptedStore.objects.get(pk=dataset.id))
    assert set(contexts) == {"products"}
    assert not any(context.is_private() for context in contexts.values())
    store_view = consumer_api.get(f"/api/datasets/{dataset.id}/encrypted-store/").json()
    assert store_view["status"] == "ready"
    assert store_view["parameters"]["products"]["security_bits"] == 128
    assert "scale" not in str(store_view["columns"])
    assert {op["name"] for op in consumer_api.get("/api/operations/").json()} >= {"mean", "linear_regression"}
    offer = publish_offer(provider_api, dataset)
    assert offer.chain_offer_id is not None
    agreement = accept_offer(consumer_api, offer, calls=5)

    table = table_of(content)
    asks: list[tuple[str, dict[str, Any]]] = [
        ("mean", {"column": "cost"}),
        ("group_by", {"by": "region", "aggregate": "mean", "column": "bmi"}),
        ("linear_regression", {"target": "systolic_bp", "features": ["age", "bmi"]}),
    ]
    for operation, params in asks:
        response = run_job(consumer_api, agreement, operation, params)
        assert response.status_code == 202, response.json()
        assert response["Location"] == response.json()["url"]
        job = wait_job(response.json()["id"])
        assert job.status == Status.SETTLED, (job.failure_code, job.failure_message)
        body = consumer_api.get(f"/api/jobs/{job.id}/").json()
        expected = get_operation(operation).reference(job.params, table)
        assert close_to(body["result"], expected, TOLERANCE), (body["result"], expected)
        assert body["transactions"]["record_usage"]["status"] == "confirmed"
        assert body["transactions"]["settle"]["status"] == "confirmed"
        assert all(body["timestamps"][s] for s in ["requested", "authorised", "computed", "released", "settled"])
        # The chain holds the use settled; the receipt is the custodian's and names the result hash.
        usage = usage_agent().usage(bytes.fromhex(job.chain_job_id[2:]))
        assert usage.status == agents.JobStatus.SETTLED
        assert body["receipt"]["result_sha256"] == body["result_hash"]
        # What an auditor checks with the consumer's receipt; a plain hash of the result is not on chain.
        salt = bytes.fromhex(body["receipt"]["result_salt"][2:])
        assert "0x" + receipts.result_commitment(body["result"], salt).hex() == body["result_hash"]
        assert "0x" + hashlib.sha256(canonical_json(body["result"])).hexdigest() != body["result_hash"]
        assert receipts.receipt_signer(body["receipt"]) == receipts.custodian().address
        assert body["receipt"]["dataset_sha256"] == dataset.content_sha256

    assert calls_on_chain(agreement) == (3, 3)
    # Only the job's consumer sees it.
    _, stranger_api = funded_user("stranger", Role.CONSUMER)
    assert stranger_api.get(f"/api/jobs/{job.id}/").status_code == 404

    earnings = provider_api.get("/api/earnings/").json()
    assert int(earnings["withdrawable"]) == 3 * PRICE
    response = provider_api.post("/api/earnings/")
    assert response.status_code == 202, response.json()
    withdraw = ChainTransaction.objects.get(pk=response.json()["id"])
    wait_for(lambda: ChainTransaction.objects.get(pk=withdraw.pk).status == "confirmed", timeout=60)
    provider_wallet = Wallet.objects.get(user=provider)
    assert agents.DevTokenAgent().balance(provider_wallet.address) == 3 * PRICE

    # An auditor asks for a reconciliation; the worker runs it and the report is served.
    _, auditor_api = funded_user("auditor", Role.AUDITOR)
    assert auditor_api.post("/api/audit/reconcile/").status_code == 202
    wait_for(ReconcileReport.objects.exists, timeout=60)
    report = auditor_api.get("/api/audit/reconcile/").json()
    assert report["ok"], report
    assert report["checked"]["job_settled"] == 3
    out = io.StringIO()
    call_command("audit", "reconcile", stdout=out)
    assert "chain and database agree" in out.getvalue()
    assert consumer_api.get("/api/audit/reconcile/").status_code == 403


@pytest.fixture
def space(anvil: AnvilNode, celery_worker_process: WorkerProcess) -> Space:
    provider, provider_api = funded_user("hospital", Role.PROVIDER)
    consumer, consumer_api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
    dataset = ingest_dataset(
        provider_api,
        registry_csv(rare_clinic_rows=3),
        non_personal="true",
        **DECLARED,
    )
    return Space(anvil, celery_worker_process, provider, provider_api, consumer, consumer_api, dataset)


def test_refusals_name_their_reason_and_charge_nothing(space: Space) -> None:
    api = space.consumer_api
    offer = publish_offer(space.provider_api, space.dataset, operations=["count", "group_by", "mean"])
    agreement = accept_offer(api, offer, calls=5)

    def refused(response: Any, status: int, code: str) -> None:
        assert response.status_code == status, response.json()
        assert response.json()["error"]["code"] == code

    refused(run_job(api, agreement, "count", {}, purpose="marketing"), 403, "purpose_not_allowed")
    refused(
        run_job(api, agreement, "linear_regression", {"target": "age", "features": ["bmi"]}),
        403,
        "operation_not_allowed",
    )
    refused(run_job(api, agreement, "mean", {"column": "no_such_column"}), 400, "invalid_operation")
    refused(run_job(api, agreement, "count", {}, epsilon=0.5), 400, "epsilon_invalid")  # non-personal: no noise
    _, stranger_api = funded_user("stranger", Role.CONSUMER)
    refused(run_job(stranger_api, agreement, "count", {}), 404, "not_found")

    # A replayed signature: the same signed nonce sent again under another idempotency key.
    wallet = Wallet.objects.get(user=space.consumer)
    assert agreement.chain_agreement_id is not None
    nonce, deadline = 10**6, int(time.time()) + 3600
    signature = eip712.sign_usage(
        key=wallet_private_key(wallet=wallet),
        usage=eip712.Usage(
            chain_id=gateway.chain_id(),
            contract=usage_agent().address(),
            agreement_id=agreement.chain_agreement_id,
            job_id=job_chain_id(agreement_id=agreement.chain_agreement_id, nonce=nonce),
            purpose=label_hash("research"),
            operation=label_hash("count"),
            params_hash=params_hash({}),
            privacy_loss=0,
            nonce=nonce,
            deadline=deadline,
        ),
    )
    signed = {"nonce": nonce, "deadline": deadline, "signature": "0x" + signature.hex()}
    first = run_job(api, agreement, "count", {}, **signed)
    assert first.status_code == 202, first.json()
    refused(run_job(api, agreement, "count", {}, **signed), 409, "signature_replayed")
    forged = {**signed, "nonce": nonce + 1}
    refused(run_job(api, agreement, "count", {}, **forged), 400, "signature_invalid")
    # The signature binds the parameters: the same signed message with other parameters is refused.
    other_params = {"where": {"column": "region", "equals": "north"}}
    refused(run_job(api, agreement, "count", other_params, **signed), 400, "signature_invalid")
    assert wait_job(first.json()["id"]).status == Status.SETTLED

    # A cohort below k is no free oracle: the request is accepted, the custodian withholds the
    # answer, and the use is paid for like an answer.
    for params in ({"by": "clinic", "aggregate": "count"}, {"where": {"column": "clinic", "equals": "rare"}}):
        operation = "group_by" if "by" in params else "count"
        response = run_job(api, agreement, operation, params)
        assert response.status_code == 202, response.json()
        job = wait_job(response.json()["id"])
        assert job.status == Status.WITHHELD
        assert job.failure_code == "cohort_too_small"
        body = api.get(f"/api/jobs/{job.id}/").json()
        assert body["result"] is None
        assert body["failure"]["code"] == "cohort_too_small"
        assert "rare" not in body["failure"]["message"]

    # An expired agreement (the clock moved past its expiry) is refused before anything is sent.
    Agreement.objects.filter(pk=agreement.pk).update(expires_at=agreement.expires_at.replace(year=2001))  # type: ignore[union-attr]
    refused(run_job(api, agreement, "count", {}), 409, "agreement_expired")

    assert calls_on_chain(agreement) == (3, 3)
    assert Job.objects.count() == 3
    call_command("audit", "reconcile", stdout=io.StringIO())


def test_two_hundred_requests_for_fifty_calls(space: Space) -> None:
    api = space.consumer_api
    offer = publish_offer(space.provider_api, space.dataset, operations=["count"])
    agreement = accept_offer(api, offer, calls=50)
    statuses: list[int] = []
    codes: Counter[str] = Counter()
    lock = threading.Lock()

    def fire(count: int) -> None:
        try:
            for _ in range(count):
                response = run_job(api, agreement, "count", {})
                with lock:
                    statuses.append(response.status_code)
                    if response.status_code != 202:
                        codes[response.json()["error"]["code"]] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=fire, args=(25,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(202) == 50
    assert codes == Counter({"calls_exhausted": 150})
    wait_for(lambda: Job.objects.filter(status=Status.SETTLED).count() == 50, timeout=300, interval=0.5)
    assert calls_on_chain(agreement) == (50, 50)
    call_command("audit", "reconcile", stdout=io.StringIO())


def test_he_worker_killed_mid_job_completes_once(
    anvil: AnvilNode, transactional_db: Any, tmp_path: Path, settings: Any
) -> None:
    env = celery_env()
    main = start_worker(env, tmp_path / "main.log", queues="default,ingest,chain,custody")
    he = start_worker(env, tmp_path / "he.log", queues="he")
    try:
        _, provider_api = funded_user("hospital", Role.PROVIDER)
        _, api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
        dataset = ingest_dataset(provider_api, registry_csv(), non_personal="true", **DECLARED)
        agreement = accept_offer(api, publish_offer(provider_api, dataset), calls=5)
        response = run_job(api, agreement, "group_by", {"by": "region", "aggregate": "mean", "column": "cost"})
        job_id = response.json()["id"]
        # The HE worker counts an attempt before it starts; its first job also loads the public
        # context (tens of MB), so there is time to kill it mid-computation.
        wait_for(lambda: Job.objects.get(pk=job_id).compute_attempts >= 1, timeout=60, interval=0.005)
        os.kill(he.pid, signal.SIGKILL)
        he.process.wait()
        assert Job.objects.get(pk=job_id).status == Status.AUTHORISED
        he = start_worker(env, tmp_path / "he-2.log", queues="he")
        settings.JOB_SWEEP_AFTER = -1  # every unfinished job counts as stalled
        tasks.sweep_jobs()
        job = wait_job(job_id)
        assert job.status == Status.SETTLED
        assert job.compute_attempts == 2
        assert calls_on_chain(agreement) == (1, 1)
        assert ChainTransaction.objects.filter(kind="usage_settle").count() == 1
    finally:
        he.stop()
        main.stop()


def test_jobs_queued_while_the_node_is_down_finish_after_it_returns(space: Space) -> None:
    api = space.consumer_api
    agreement = accept_offer(api, publish_offer(space.provider_api, space.dataset), calls=5)
    node: AnvilNode = space.anvil
    node.stop()
    responses = [run_job(api, agreement, "mean", {"column": "age"}) for _ in range(3)]
    assert [r.status_code for r in responses] == [202] * 3
    # Every job's authorisation was tried against the absent node and put back to wait.
    wait_for(
        lambda: (
            len({line for line in space.worker.log().splitlines() if "authorise_job[" in line and "retry:" in line})
            >= 3
        )
    )
    assert set(Job.objects.values_list("status", flat=True)) == {Status.REQUESTED}
    node.start()
    for response in responses:
        assert wait_job(response.json()["id"], timeout=180).status == Status.SETTLED
    assert calls_on_chain(agreement) == (3, 3)
    assert outbox.writes_to_retry(older_than_seconds=0) == []


def test_jobs_requested_while_the_broker_is_gone_run_once_it_is_back(
    space: Space, settings: Any, tmp_path: Path
) -> None:
    """The web process cannot reach any broker: jobs are still accepted and recorded, nothing is
    charged, and the sweeper (on a process that can reach the broker) moves them on, once each."""
    offer = publish_offer(space.provider_api, space.dataset)
    agreement = accept_offer(space.consumer_api, offer, calls=5)
    env = celery_env()
    env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    port, log_path = free_port(), tmp_path / "web.log"
    with log_path.open("wb") as log:
        web = subprocess.Popen(
            gunicorn_command(port),
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}/api"
        session = requests.Session()
        _, token = api_token_issue(user=space.consumer)
        session.headers["Authorization"] = f"Token {token}"
        wait_for(lambda: _answers(session, f"{base}/me/") or web.poll() is not None, timeout=60)
        body = {"agreement": str(agreement.id), "operation": "mean", "params": {"column": "age"}, "purpose": "research"}
        responses = [session.post(f"{base}/jobs/", json=body, timeout=60) for _ in range(3)]
        assert [r.status_code for r in responses] == [202] * 3, [r.text for r in responses]
        assert log_path.read_text().count("could not queue dataspace.compute.tasks.authorise_job") == 3
        # It started all the same: opening the connection ahead (gunicorn's post_worker_init) gave up.
        assert "the broker connection was not opened ahead" in log_path.read_text()
    finally:
        web.terminate()
        web.wait(timeout=30)

    # The worker is up and has drained its chain queue: no message of these jobs ever reached it.
    space.worker.drain_queue("chain")
    assert "authorise_job[" not in space.worker.log()
    assert set(Job.objects.values_list("status", flat=True)) == {Status.REQUESTED}
    assert calls_on_chain(agreement) == (0, 0)

    settings.JOB_SWEEP_AFTER = -1
    assert tasks.sweep_jobs() == 3
    for response in responses:
        assert wait_job(response.json()["id"], timeout=180).status == Status.SETTLED
    assert calls_on_chain(agreement) == (3, 3)
    call_command("audit", "reconcile", stdout=io.StringIO())


def _answers(session: requests.Session, url: str) -> bool:
    try:
        return session.get(url, timeout=5).status_code == 200
    except (requests.ConnectionError, requests.Timeout):  # a worker still booting may not answer in time
        return False


def test_a_job_whose_computation_keeps_dying_is_refunded(
    anvil: AnvilNode, transactional_db: Any, tmp_path: Path
) -> None:
    from tests.support.workers import celery_env

    env = celery_env()
    main = start_worker(env, tmp_path / "main.log", queues="default,ingest,chain,custody")
    he: WorkerProcess | None = None
    try:
        _, provider_api = funded_user("hospital", Role.PROVIDER)
        _, api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
        dataset = ingest_dataset(provider_api, registry_csv(), non_personal="true", **DECLARED)
        agreement = accept_offer(api, publish_offer(provider_api, dataset), calls=5)
        job_id = run_job(api, agreement, "mean", {"column": "age"}).json()["id"]
        wait_for(lambda: Job.objects.get(pk=job_id).status == Status.AUTHORISED, timeout=60)
        assert calls_on_chain(agreement) == (1, 0)  # recorded: the call is counted and paid from escrow
        # As if three workers had died on it: the next attempt gives up and refunds.
        Job.objects.filter(pk=job_id).update(compute_attempts=jobs.MAX_COMPUTE_ATTEMPTS)
        he = start_worker(env, tmp_path / "he.log", queues="he")
        job = wait_job(job_id)
        assert job.status == Status.REFUNDED
        assert job.failure_code == "compute_failed"
        assert calls_on_chain(agreement) == (0, 0)
        usage = usage_agent().usage(bytes.fromhex(job.chain_job_id[2:]))
        assert usage.status == agents.JobStatus.REFUNDED
        agreement.refresh_from_db()
        assert agreement.calls_reserved == 0
        body = api.get(f"/api/jobs/{job_id}/").json()
        assert body["result"] is None
        assert body["transactions"]["refund"]["status"] == "confirmed"
        call_command("audit", "reconcile", stdout=io.StringIO())
    finally:
        if he is not None:
            he.stop()
        main.stop()


def test_a_job_whose_release_keeps_failing_is_refunded(space: Space) -> None:
    """The custodian cannot unseal the dataset's secret key (its blob is gone): each release fails,
    the third failure fails the job, and the consumer gets the call back."""
    api = space.consumer_api
    agreement = accept_offer(api, publish_offer(space.provider_api, space.dataset), calls=5)
    for key in HEKey.objects.filter(store__dataset=space.dataset):
        blobs.delete(key.secret_blob)
    job = wait_job(run_job(api, agreement, "mean", {"column": "age"}).json()["id"], timeout=180)
    assert job.status == Status.REFUNDED
    assert job.failure_code == "release_failed"
    assert job.release_attempts == jobs.MAX_RELEASE_ATTEMPTS
    assert job.result is None
    assert calls_on_chain(agreement) == (0, 0)
    assert usage_agent().usage(bytes.fromhex(job.chain_job_id[2:])).status == agents.JobStatus.REFUNDED
    call_command("audit", "reconcile", stdout=io.StringIO())


def test_a_worker_process_opens_the_likely_next_datasets_contexts_as_it_starts(space: Space, tmp_path: Path) -> None:
    """ISSUE-14: a worker started once a store is ready opens its public and secret contexts
    before any job asks (the first job on `make run` paid ~0.13 s for the public one alone)."""
    store = EncryptedStore.objects.get(pk=space.dataset.id)
    assert warm_up.likely_next_store() == store
    # On a queue nothing is sent to: it takes none of the other worker's tasks.
    second = start_worker(celery_env(), tmp_path / "second.log", queues="warm-up-only")
    try:
        wait_for(lambda: "CKKS contexts opened ahead of the first job: public, secret" in second.log(), timeout=60)
    finally:
        second.stop()


def test_concurrent_jobs_load_a_public_context_once(space: Space, monkeypatch: pytest.MonkeyPatch) -> None:
    # The warm-up and a process's first job may ask for the same context at once.
    store = EncryptedStore.objects.get(pk=space.dataset.id)
    with keystore._cache_lock:
        keystore._cache.clear()
    loads = Counter[int]()
    real_load = load_public_context

    def counted_load(data: bytes) -> Any:
        loads[threading.get_ident()] += 1
        time.sleep(0.2)  # long enough for the other thread to arrive while this one loads
        return real_load(data)

    monkeypatch.setattr(keystore, "load_public_context", counted_load)
    results: list[dict[str, Any]] = []

    def first_job() -> None:
        try:
            results.append(keystore.public_contexts(store))
        finally:
            connection.close()

    threads = [threading.Thread(target=first_job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 2
    assert results[0]
    assert sum(loads.values()) == len(results[0])  # one load per context, not one per thread
    assert all(results[0][level] is results[1][level] for level in results[0])
    with keystore._cache_lock:
        keystore._cache.clear()
