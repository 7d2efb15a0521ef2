"""ISSUE-14: settlement in batches (``SETTLE_BATCH_SIZE`` > 1), on a real anvil with real Celery
workers: several jobs settled by one settleBatch, a partial batch flushed by its wait, a batch the
chain refuses falling back to one outcome per job, batched receipts proven on chain (and forged
proofs refused), and the Python Merkle tree checked against the contract's own verifyReceipt."""

from __future__ import annotations

import random
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataspace.accounts.models import Role
from dataspace.accounts.services import api_token_issue
from dataspace.audit.receipts import receipt_verify
from dataspace.audit.reconcile import reconcile
from dataspace.chain import agents, gateway, merkle
from dataspace.chain.models import ChainTransaction
from dataspace.compute import receipts
from dataspace.compute.models import Job, SettlementBatch, SettlementBatchEntry
from dataspace.errors import DomainError, ErrorCode
from tests.enclaves.conftest import requires_sandbox
from tests.integration.test_chain_privacy import Market, agreement_for, confirmed, record
from tests.integration.test_jobs import DECLARED, registry_csv
from tests.integration.test_receipt_audit import signed_by, trade  # noqa: F401 - the fixture
from tests.integration.test_tee_jobs import BUSY_LOOP, VALUE_SCHEMA, _approve, _submit, _tee_offer
from tests.sdk.test_sdk_live import SDK_SRC, own_key
from tests.support.anvil import AnvilNode
from tests.support.space import TOKENS, accept_offer, funded_user, ingest_dataset, publish_offer, run_job, wait_job
from tests.support.users import client_for, make_user
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess, celery_env, start_worker

sys.path.insert(0, str(SDK_SRC))

from redlake_client import Client, signing
from redlake_client.verify import verify as sdk_verify

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
Status = Job.Status


def usage_agent() -> agents.UsageAgreementsAgent:
    return agents.UsageAgreementsAgent()


def refusal(receipt: dict[str, Any]) -> tuple[ErrorCode, str]:
    with pytest.raises(DomainError) as error:
        receipt_verify(receipt=receipt)
    return error.value.code, error.value.message


def settle_batch(jobs: list[tuple[bytes, bytes]]) -> tuple[int, bytes, list[list[bytes]]]:
    """settleBatch over (job id, leaf) pairs with the root computed here: the chain's batch id,
    the root and each leaf's proof."""
    leaves = [leaf for _, leaf in jobs]
    root = merkle.merkle_root(leaves)
    write = confirmed(
        usage_agent().settle_batch(key=f"test-batch:{uuid.uuid4()}", root=root, job_ids=[j for j, _ in jobs])
    )
    event = agents.receipt_event(write, contract="UsageAgreements", event="BatchSettled")
    return int(event["batchId"]), root, merkle.merkle_proofs(leaves)


# ------------------------------------------------------------------ the tree against the contract


def test_python_roots_and_proofs_verify_with_the_contract(anvil: AnvilNode, trade: Market) -> None:  # noqa: F811
    """Property-style: trees of several shapes built in Python, committed by settleBatch, every
    proof accepted by verifyReceipt (eth_call) and every tampered one refused."""
    rng = random.Random(14)
    contract = gateway.contract("UsageAgreements").functions
    for size in (1, 2, 3, 5, 8, 10):
        agreement = agreement_for(trade)
        jobs = []
        for nonce in range(size):
            job_id, write = record(trade, agreement, nonce, loss=1000, params={"column": "age"})
            confirmed(write)
            result, attestation = rng.randbytes(32), rng.randbytes(32)
            leaf = merkle.receipt_leaf(job_id, result, attestation)
            assert bytes(gateway.view(contract.receiptLeaf(job_id, result, attestation))) == leaf
            jobs.append((job_id, leaf))
        batch_id, root, proofs = settle_batch(jobs)
        assert usage_agent().batch_root(batch_id) == root
        for i, ((_, leaf), proof) in enumerate(zip(jobs, proofs, strict=True)):
            assert usage_agent().verify_receipt(batch_id=batch_id, leaf=leaf, proof=proof)
            assert not usage_agent().verify_receipt(batch_id=batch_id + 1, leaf=leaf, proof=proof)
            assert not usage_agent().verify_receipt(batch_id=batch_id, leaf=rng.randbytes(32), proof=proof)
            if proof:
                step = rng.randrange(len(proof))
                forged = [*proof[:step], rng.randbytes(32), *proof[step + 1 :]]
                assert not usage_agent().verify_receipt(batch_id=batch_id, leaf=leaf, proof=forged)
            for j, (_, other) in enumerate(jobs):
                if j != i and proofs[j] != proof:
                    assert not usage_agent().verify_receipt(batch_id=batch_id, leaf=other, proof=proof)
        for job_id, _ in jobs:
            assert usage_agent().usage(job_id).status == agents.JobStatus.SETTLED


def test_a_batched_receipt_verifies_by_inclusion_and_a_forged_proof_is_refused(
    anvil: AnvilNode,
    trade: Market,  # noqa: F811
) -> None:
    market = trade
    agreement = agreement_for(market)
    key = bytes(receipts.custodian().key)
    signed = []
    for nonce in range(3):
        job_id, write = record(market, agreement, nonce, loss=1000, params={"column": "age"})
        confirmed(write)
        result = bytes([nonce + 1]) * 32
        receipt = signed_by(
            key, {"job_id": "0x" + job_id.hex(), "operation": "mean", "result_sha256": "0x" + result.hex()}
        )
        signed.append((job_id, receipt, merkle.receipt_leaf(job_id, result, receipts.attestation_hash(receipt))))
    batch_id, root, proofs = settle_batch([(job_id, leaf) for job_id, _, leaf in signed])

    def with_batch(receipt: dict[str, Any], proof: list[bytes], **section: Any) -> dict[str, Any]:
        batch = {"batch_id": batch_id, "root": "0x" + root.hex(), "proof": ["0x" + p.hex() for p in proof]}
        return {**receipt, receipts.BATCH_FIELD: {**batch, **section}}

    for (job_id, receipt, _), proof in zip(signed, proofs, strict=True):
        check = receipt_verify(receipt=with_batch(receipt, proof))
        assert check.batch_id == batch_id
        assert check.job_id == "0x" + job_id.hex()
        assert check.custodian == receipts.custodian().address
        assert check.recorded_block <= check.settled_block
    first = signed[0][1]
    # A forged proof, another job's proof, another batch, a receipt changed after signing.
    forged = with_batch(first, [bytes(32), *proofs[0][1:]])
    assert refusal(forged)[0] == ErrorCode.RECEIPT_NOT_ON_CHAIN
    assert refusal(with_batch(first, proofs[1]))[0] == ErrorCode.RECEIPT_NOT_ON_CHAIN
    assert refusal(with_batch(first, proofs[0], batch_id=batch_id + 1))[0] == ErrorCode.RECEIPT_NOT_ON_CHAIN
    # Another job's receipt cannot borrow this one's leaf: the leaf is recomputed, never read.
    leaf_claim = with_batch(signed[1][1], proofs[0], leaf="0x" + signed[0][2].hex())
    assert refusal(leaf_claim)[0] == ErrorCode.RECEIPT_NOT_ON_CHAIN
    altered = signed_by(key, {**{k: v for k, v in first.items() if k != "signature"}, "operation": "sum"})
    assert refusal(with_batch(altered, proofs[0]))[0] == ErrorCode.RECEIPT_NOT_ON_CHAIN
    malformed = {**first, receipts.BATCH_FIELD: {"batch_id": batch_id, "proof": ["0x12"]}}
    assert refusal(malformed)[0] == ErrorCode.VALIDATION_FAILED
    # The auditor's door says the same.
    auditor = client_for(make_user("auditor", Role.AUDITOR))
    accepted = auditor.post("/api/audit/receipts/verify/", {"receipt": with_batch(first, proofs[0])}, format="json")
    assert accepted.status_code == 200, accepted.json()
    assert accepted.json()["batch_id"] == batch_id
    refused = auditor.post("/api/audit/receipts/verify/", {"receipt": forged}, format="json")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "receipt_not_on_chain"


# --------------------------------------------------------------------------------- the job flow


@pytest.fixture
def batching(
    request: pytest.FixtureRequest, anvil: AnvilNode, settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[WorkerProcess]:
    """A real worker (every queue) started with ``SETTLE_BATCH_SIZE`` and
    ``SETTLE_BATCH_WAIT_SECONDS`` set to the test's (size, wait)."""
    size, wait = request.param
    for name, value in (("SETTLE_BATCH_SIZE", size), ("SETTLE_BATCH_WAIT_SECONDS", wait)):
        monkeypatch.setenv(name, str(value))
        setattr(settings, name, value)
    worker = start_worker(celery_env(), tmp_path / "worker.log")
    try:
        yield worker
    finally:
        worker.stop()


def market_of_jobs(calls: int) -> tuple[Any, Any]:
    """A non-personal registry on offer and a consumer's agreement for ``calls`` calls."""
    _, provider_api = funded_user("hospital", Role.PROVIDER)
    _, consumer_api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
    dataset = ingest_dataset(provider_api, registry_csv(400), non_personal="true", **DECLARED)
    offer = publish_offer(provider_api, dataset)
    return consumer_api, accept_offer(consumer_api, offer, calls=calls)


def submit(consumer_api: Any, agreement: Any, column: str) -> str:
    response = run_job(consumer_api, agreement, "mean", {"column": column})
    assert response.status_code == 202, response.json()
    return str(response.json()["id"])


def batch_writes() -> list[ChainTransaction]:
    return list(ChainTransaction.objects.filter(function="settleBatch").order_by("pk"))


@pytest.mark.parametrize("batching", [(3, 600.0)], indirect=True)
def test_three_jobs_settle_in_one_batch_with_verifiable_receipts(batching: WorkerProcess) -> None:
    consumer_api, agreement = market_of_jobs(calls=5)
    ids = [submit(consumer_api, agreement, column) for column in ("cost", "bmi", "age")]
    jobs = [wait_job(job_id) for job_id in ids]
    assert [job.status for job in jobs] == [Status.SETTLED] * 3, [(j.failure_code, j.failure_message) for j in jobs]
    # One settleBatch for the three, none alone; the chain counted one batch of three settled calls.
    (write,) = batch_writes()
    assert write.status == ChainTransaction.Status.CONFIRMED
    assert write.idempotency_key.startswith("batch-settle:")
    assert not ChainTransaction.objects.filter(function="settle").exists()
    assert all(job.settle_tx_id is None for job in jobs)
    batch = SettlementBatch.objects.get()
    assert (batch.status, batch.size, batch.chain_batch_id) == (SettlementBatch.Status.CONFIRMED, 3, 1)
    assert usage_agent().batch_root(1).hex() == batch.root[2:]
    assert int(usage_agent().agreement(agreement.chain_agreement_id)["calls_settled"]) == 3
    for job in jobs:
        assert usage_agent().usage(bytes.fromhex(job.chain_job_id[2:])).status == agents.JobStatus.SETTLED
        body = consumer_api.get(f"/api/jobs/{job.id}/").json()
        assert body["result"] is not None
        assert body["transactions"]["settle"]["tx_hash"] == write.tx_hash
        receipt = body["receipt"]
        section = receipt[receipts.BATCH_FIELD]
        assert section["batch_id"] == 1
        assert section["root"] == batch.root
        assert section["tx_hash"] == write.tx_hash
        # The signed part is the custodian's as before; the batch proof beside it proves on chain.
        assert receipts.receipt_signer(receipt) == receipts.custodian().address
        check = receipt_verify(receipt=receipt)
        assert check.batch_id == 1
        assert check.settled_block == write.block_number
    # Another job's proof on this receipt is refused.
    first, second = (consumer_api.get(f"/api/jobs/{job.id}/").json()["receipt"] for job in jobs[:2])
    swapped = {**first, receipts.BATCH_FIELD: {**first["batch"], "proof": second["batch"]["proof"]}}
    assert refusal(swapped)[0] == ErrorCode.RECEIPT_NOT_ON_CHAIN
    report = reconcile()
    assert report.ok, report.mismatches
    assert report.checked["batch_settled_jobs"] == 3
    # A proof the platform kept wrong is reported, not trusted.
    entry = SettlementBatchEntry.objects.get(job=jobs[0])
    SettlementBatchEntry.objects.filter(pk=entry.pk).update(proof=[*list(reversed(entry.proof)), "0x" + "00" * 32])
    assert any("does not prove against batch 1" in m for m in reconcile().mismatches)


@pytest.mark.parametrize("batching", [(10, 1.0)], indirect=True)
def test_a_partial_batch_is_sent_when_its_oldest_job_has_waited(batching: WorkerProcess) -> None:
    consumer_api, agreement = market_of_jobs(calls=3)
    jobs = [wait_job(submit(consumer_api, agreement, column)) for column in ("cost", "bmi")]
    assert [job.status for job in jobs] == [Status.SETTLED] * 2
    # Never full (10): each batch was sent by its wait; both jobs settled in batches.
    entries = SettlementBatchEntry.objects.filter(job__in=jobs).select_related("batch")
    assert entries.count() == 2
    assert all(e.batch.status == SettlementBatch.Status.CONFIRMED and e.batch.size < 10 for e in entries)
    assert len(batch_writes()) == SettlementBatch.objects.count() <= 2
    for job in jobs:
        assert receipt_verify(receipt=consumer_api.get(f"/api/jobs/{job.id}/").json()["receipt"]).batch_id
    assert reconcile().ok


@pytest.mark.parametrize("batching", [(3, 600.0)], indirect=True)
def test_a_batch_the_chain_refuses_falls_back_to_one_outcome_per_job(batching: WorkerProcess) -> None:
    consumer_api, agreement = market_of_jobs(calls=5)
    early = [submit(consumer_api, agreement, column) for column in ("cost", "bmi")]
    wait_for(lambda: Job.objects.filter(pk__in=early, status=Status.RELEASED).count() == 2, timeout=120)
    # Meanwhile the operator refunds one of them on chain (the batch will name a refunded job).
    refunded = Job.objects.get(pk=early[0])
    confirmed(
        usage_agent().refund(key="operator-refund", job_id=bytes.fromhex(refunded.chain_job_id[2:]), reason="operator")
    )
    last = submit(consumer_api, agreement, "age")
    outcomes = {job_id: wait_job(job_id) for job_id in [*early, last]}
    (write,) = batch_writes()
    assert write.status == ChainTransaction.Status.FAILED
    assert "JobNotRecorded" in write.revert_reason
    assert SettlementBatch.objects.get().status == SettlementBatch.Status.FAILED
    # Exactly one outcome each: the refunded one refunded, the others settled alone.
    assert outcomes[early[0]].status == Status.REFUNDED
    for job_id in (early[1], last):
        job = outcomes[job_id]
        assert job.status == Status.SETTLED, (job.failure_code, job.failure_message)
        assert job.settle_tx is not None
        assert job.settle_tx.status == ChainTransaction.Status.CONFIRMED
        receipt = consumer_api.get(f"/api/jobs/{job.id}/").json()["receipt"]
        assert receipts.BATCH_FIELD not in receipt
        assert receipt_verify(receipt=receipt).batch_id is None
    assert consumer_api.get(f"/api/jobs/{early[0]}/").json()["result"] is None
    state = usage_agent().agreement(agreement.chain_agreement_id)
    assert (int(state["calls_used"]), int(state["calls_settled"])) == (2, 2)
    report = reconcile()
    assert report.ok, report.mismatches


@pytest.mark.parametrize("batching", [(10, 1.0)], indirect=True)
def test_the_sdk_verifies_a_batched_job_by_inclusion_on_chain(
    batching: WorkerProcess, anvil: AnvilNode, live_server: Any, tmp_path: Path
) -> None:
    _, provider_api = funded_user("hospital", Role.PROVIDER)
    dataset = ingest_dataset(provider_api, registry_csv(400), non_personal="true", **DECLARED)
    offer = publish_offer(provider_api, dataset)
    consumer = make_user("analyst", Role.CONSUMER)
    _, token = api_token_issue(user=consumer)
    _, key_file = own_key(tmp_path)
    client = Client(live_server.url, token, rpc_url=anvil.url, custodians=[receipts.custodian().address])
    signer = signing.from_key_file(key_file)
    client.register_wallet(signer)
    agreement = client.accept_offer(offer.id, 2, signer=signer)
    job = client.run(agreement.id, "mean", {"column": "cost"}, signer=signer)
    assert job.status == "settled"
    assert job.receipt is not None
    assert receipts.BATCH_FIELD in job.receipt
    report = client.verify(job)
    names = {c.name for c in report.checks}
    assert report.ok, report.as_dict()
    assert {"settlement.batch_inclusion", "settlement.batch_names_job", "receipt.custodian"} <= names
    # A forged proof fails the inclusion check on chain.
    section = job.receipt[receipts.BATCH_FIELD]
    job.receipt = {**job.receipt, receipts.BATCH_FIELD: {**section, "proof": ["0x" + "11" * 32]}}
    forged = sdk_verify(client, job, raise_on_failure=False)
    assert not forged.ok
    assert not next(c for c in forged.checks if c.name == "settlement.batch_inclusion").ok


@requires_sandbox
@pytest.mark.parametrize("batching", [(5, 600.0)], indirect=True)
def test_metered_jobs_settle_alone_while_batching_is_on(batching: WorkerProcess, tmp_path: Path) -> None:
    tee_worker = start_worker(celery_env(), tmp_path / "tee-worker.log", queues="tee")
    try:
        _, provider_api = funded_user("hospital", Role.PROVIDER)
        _, consumer_api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
        dataset = ingest_dataset(provider_api, registry_csv(200), non_personal="true", **DECLARED)
        offer = _tee_offer(provider_api, dataset, compute_rate=10**18, max_cpu_millis=10_000, min_cohort=10)
        agreement = accept_offer(consumer_api, offer, calls=1)
        algorithm = _submit(consumer_api, offer, "python", BUSY_LOOP, VALUE_SCHEMA)
        assert algorithm.status_code == 201, algorithm.json()
        _approve(provider_api, algorithm.json()["id"])
        response = run_job(
            consumer_api, agreement, "algorithm", {"algorithm": algorithm.json()["id"], "params": {"seconds": 0.2}}
        )
        # A batch of 5 with a 600 s wait would hold it: settled now means it was not batched.
        job = wait_job(response.json()["id"], timeout=240)
    finally:
        tee_worker.stop()
    assert job.status == Status.SETTLED, (job.failure_code, job.failure_message)
    assert job.settle_tx is not None
    assert job.settle_tx.function == "settleMetered"
    assert not SettlementBatchEntry.objects.filter(job=job).exists()
    assert not batch_writes()
    assert reconcile().ok
