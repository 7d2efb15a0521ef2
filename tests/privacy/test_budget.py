"""The dataset's privacy budget through the real stack: the ledger and the contract agree under
concurrency, a noised answer states its mechanism and error bound (never a scale measured on the
data), and every bad privacy input is a 4xx that spends nothing."""

from __future__ import annotations

import io
import threading
from collections import Counter
from typing import Any

import pytest
from django.db import connection

from dataspace.accounts.models import Role
from dataspace.accounts.selectors import wallet_address
from dataspace.catalog.models import Dataset
from dataspace.chain import agents
from dataspace.chain.encoding import rho_nano
from dataspace.compute.models import Job
from dataspace.privacy import accountant
from dataspace.privacy import services as privacy
from dataspace.privacy.models import DatasetBudget, PrivacyLoss
from tests.privacy.test_attacks import attack_csv, attack_table, open_market
from tests.support.anvil import AnvilNode
from tests.support.space import TOKENS, accept_offer, funded_user, ingest_dataset, publish_offer, run_job, wait_job
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
Status = Job.Status


def chain_privacy(dataset: Dataset) -> agents.DatasetPrivacyOnChain:
    """The dataset's budget as the contract keeps it (its chain id carries its provider)."""
    provider = wallet_address(user_id=dataset.provider_id)
    return agents.UsageAgreementsAgent().dataset_privacy(dataset.id, provider=provider)


def test_two_hundred_jobs_against_a_budget_for_fifty(anvil: AnvilNode, celery_worker_process: WorkerProcess) -> None:
    """Fired from 8 threads: exactly the jobs the budget holds are accepted, the rest refused
    with budget_exhausted; the chain's spent loss is the ledger's, to the nano-ρ."""
    job_epsilon = 0.05
    rho_job = privacy.rho_of(job_epsilon)
    # A total holding 50 jobs and not 51.
    total_epsilon = accountant.epsilon_for_rho(50.5 * rho_job, privacy_delta())
    market = open_market(dataset_epsilon=total_epsilon, calls=200)
    fits = int(privacy.rho_of(total_epsilon) // rho_job)
    assert fits == 50
    statuses: list[int] = []
    codes: Counter[str] = Counter()
    lock = threading.Lock()
    queries = distinct_queries()

    def fire(offset: int) -> None:
        try:
            for index in range(offset, 200, 8):
                operation, params = queries[index]
                response = run_job(market.consumer_api, market.agreement, operation, params, epsilon=job_epsilon)
                with lock:
                    statuses.append(response.status_code)
                    if response.status_code != 202:
                        codes[response.json()["error"]["code"]] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=fire, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = statuses.count(202)
    assert accepted == fits
    assert codes == Counter({"budget_exhausted": 200 - fits})
    final = {Status.SETTLED, Status.WITHHELD, Status.REFUNDED, Status.REJECTED}
    wait_for(lambda: Job.objects.exclude(status__in=final).count() == 0, timeout=300, interval=0.5)
    assert Job.objects.filter(status__in=[Status.SETTLED, Status.WITHHELD]).count() == fits
    spent = PrivacyLoss.objects.filter(dataset=market.dataset, status=PrivacyLoss.Status.SPENT)
    on_chain = chain_privacy(market.dataset)
    assert on_chain.used == sum(rho_nano(loss.rho) for loss in spent)
    assert on_chain.used <= on_chain.limit
    budget = DatasetBudget.objects.get(pk=market.dataset.id)
    assert budget.rho_committed == pytest.approx(accountant.total_rho([loss.rho for loss in spent]))


def distinct_queries() -> list[tuple[str, dict[str, Any]]]:
    """200 different queries: a repeated one would be answered from the cache, for free."""
    ranges = [{"column": "age", "bucket_from": a, "bucket_to": b} for a in range(7) for b in range(a, 7)]
    queries: list[tuple[str, dict[str, Any]]] = [("count", {"where": where}) for where in ranges]
    queries += [
        (op, {"column": c, "where": w}) for op in ("mean", "sum") for c in ("age", "cost", "bmi") for w in ranges
    ]
    queries += [("count", {}), *(("mean", {"column": c}) for c in ("age", "cost", "bmi"))]
    assert len(queries) == 200
    return queries


def privacy_delta() -> float:
    from django.conf import settings

    return float(settings.PRIVACY_DELTA)


def test_a_noised_answer_states_its_mechanism_and_error_bound(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    market = open_market()
    response = run_job(market.consumer_api, market.agreement, "mean", {"column": "bmi"}, epsilon=0.5)
    assert response.status_code == 202, response.json()
    job = wait_job(response.json()["id"])
    assert job.status == Status.SETTLED, (job.failure_code, job.failure_message)
    body = market.consumer_api.get(f"/api/jobs/{job.id}/").json()
    noise = body["receipt"]["noise"]
    assert noise["mechanism"] == "gaussian (OpenDP, zCDP)"
    assert noise["epsilon"] == 0.5
    assert noise["delta"] == privacy_delta()
    assert "scales" not in str(noise)  # no scale measured on the data, nor any scale at all
    assert body["error_bounds"] == noise["error_bounds_95"]
    assert body["error_bounds"]["mean"] > 0
    assert body["params"] == {"column": "bmi"}  # echoed as sent
    true_mean = float(attack_table().bmi.mean())
    # The 95% bound: a miss is possible (1 in 20), a miss by 4 bounds is not (p < 1e-6).
    assert abs(body["result"]["mean"] - true_mean) <= 4 * body["error_bounds"]["mean"]


def test_bad_privacy_input_is_refused_and_spends_nothing(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    market = open_market(dataset_epsilon=1.0, share=0.5)

    def code(response: Any) -> str:
        assert 400 <= response.status_code < 500, response.content
        return str(response.json()["error"]["code"])

    api, agreement = market.consumer_api, market.agreement
    assert code(run_job(api, agreement, "mean", {"column": "bmi"}, epsilon=0)) == "epsilon_invalid"
    assert code(run_job(api, agreement, "mean", {"column": "bmi"}, epsilon=-0.1)) == "validation_failed"
    nan = api.post(
        "/api/jobs/",
        data=f'{{"agreement": "{agreement.id}", "operation": "mean", "params": {{"column": "bmi"}}, '
        '"purpose": "research", "epsilon": NaN}',
        content_type="application/json",
    )
    assert code(nan) in {"validation_failed", "epsilon_invalid"}
    assert code(run_job(api, agreement, "mean", {"column": "bmi"}, epsilon=0.6)) == "budget_exhausted"  # > share
    assert code(run_job(api, agreement, "group_by", {"by": "clinic", "aggregate": "count"}, epsilon=0.1)) == (
        "column_not_public"
    )
    assert not Job.objects.exists()
    assert not PrivacyLoss.objects.exists()
    # The provider's terms: a budget lowered, or a personal dataset declared non-personal once
    # it has offers, is refused.
    url = f"/api/datasets/{market.dataset.id}/"
    assert code(market.provider_api.patch(url, {"privacy_epsilon": 0.5}, format="json")) == "privacy_terms_locked"
    assert code(market.provider_api.patch(url, {"non_personal": True}, format="json")) == "privacy_terms_locked"
    raised = market.provider_api.patch(url, {"privacy_epsilon": 2.0}, format="json")
    assert raised.status_code == 200, raised.json()
    # ... and the raised budget reaches the chain.
    wanted = rho_nano(privacy.rho_of(2.0))
    wait_for(lambda: chain_privacy(market.dataset).limit == wanted, timeout=60)


def test_bad_privacy_terms_at_upload_and_offer_are_refused(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    _, provider_api = funded_user("hospital", Role.PROVIDER)
    for epsilon in ("0", "-1", "nan", "inf", "1000"):
        response = provider_api.post(
            "/api/datasets/",
            {"file": _file(), "title": "t", "privacy_epsilon": epsilon},
            format="multipart",
        )
        assert response.status_code == 400, (epsilon, response.json())
    personal = ingest_dataset(provider_api, attack_csv(), privacy_epsilon="1.0")
    body = {
        "dataset": str(personal.id),
        "purposes": ["research"],
        "operations": ["mean"],
        "max_calls": 5,
        "price_per_call": 1,
        "duration_days": 1,
    }
    for share in (0, 2.0):  # no noise on a personal dataset; more than the dataset's total
        refused = provider_api.post("/api/offers/", {**body, "privacy_budget": share}, format="json")
        assert refused.status_code == 400, refused.json()
        assert refused.json()["error"]["code"] == "privacy_terms_invalid"
    non_personal = ingest_dataset(provider_api, attack_csv(), non_personal="true", title="open data")
    refused = provider_api.post(
        "/api/offers/", {**body, "dataset": str(non_personal.id), "privacy_budget": 1.0}, format="json"
    )
    assert refused.json()["error"]["code"] == "privacy_terms_invalid"
    offer = publish_offer(provider_api, non_personal, operations=["mean"])
    assert offer.privacy_budget == 0
    on_chain = chain_privacy(non_personal)
    assert on_chain.non_personal
    _, consumer_api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
    agreement = accept_offer(consumer_api, offer, calls=3)
    job = wait_job(run_job(consumer_api, agreement, "mean", {"column": "bmi"}).json()["id"])
    assert job.status == Status.SETTLED
    assert job.receipt is not None
    assert job.receipt["noise"]["mechanism"].startswith("none")


def _file() -> Any:
    handle = io.BytesIO(attack_csv())
    handle.name = "d.csv"
    return handle
