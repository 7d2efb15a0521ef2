"""A determined consumer against the real stack: every attack class of docs/privacy.md, through
REST, on a real anvil, a real Celery worker and the configured database and broker.

Each attack is run once for real. Where it can be answered, it is then replayed 200 times in
this process with the custodian's own code on the job's exact aggregates (decrypted from the
job's real result ciphertext): the same OpenDP Gaussian, the same bounds-derived sensitivities
and ρ, the same withholding on noisy cohorts, the same finishing. The attacker wins a trial when
the answer is released and their estimate of the victim's value is within the stated bound; they
must lose at least 95% of the trials. OpenDP samples from the operating system's CSPRNG and has
no seed, so the trials are statistical; every bound below is set where the attacker's chance per
trial is well under 2%, so 200 trials fail the check with probability below 1e-4.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dataspace.accounts.models import Role
from dataspace.accounts.selectors import wallet_address
from dataspace.catalog.models import Dataset
from dataspace.chain import agents
from dataspace.chain.encoding import rho_nano
from dataspace.compute import custody, selectors
from dataspace.compute.he.operations import get_operation
from dataspace.compute.models import EncryptedStore, Job
from dataspace.policies.models import Agreement
from dataspace.privacy import services as privacy
from dataspace.privacy.models import PrivacyLoss
from tests.support.anvil import AnvilNode
from tests.support.space import TOKENS, accept_offer, funded_user, ingest_dataset, publish_offer, run_job, wait_job
from tests.support.users import client_for, make_user
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROWS = 1500
VICTIM_COST = 12_345.0
COST_BOUNDS = [0.0, 50_000.0]
AGE_EDGES = [20, 30, 40, 50, 60, 70, 80, 90]
TRIALS = 200
JOB_EPSILON = 0.25
HIDDEN_CLINICS = ["st-alphonse", "st-bernadette", "st-columba"]  # a column whose values are not public
Status = Job.Status


def attack_table() -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(attack_csv()))


def attack_csv() -> bytes:
    """Synthetic patients; row 0 is the victim: aged 99 (above the provider's last age edge), the
    only row with ``rare`` = 1, and a cost the attacker wants. Region ``tiny`` holds 3 rows."""
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "age": rng.integers(20, 90, ROWS),
            "cost": np.round(rng.uniform(500, 20_000, ROWS), 2),
            "bmi": np.round(rng.normal(26, 4, ROWS).clip(15, 50), 1),
            "rare": np.zeros(ROWS, dtype=int),
            "region": np.array(["north", "south", "east", "west"])[np.arange(ROWS) % 4],
            "clinic": np.array(HIDDEN_CLINICS)[np.arange(ROWS) % 3],
        }
    )
    frame.loc[0, ["age", "cost", "rare"]] = [99, VICTIM_COST, 1]
    frame.loc[1:3, "region"] = "tiny"
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


@dataclass(frozen=True)
class Market:
    provider_api: Any
    consumer: Any
    consumer_api: Any
    dataset: Dataset
    agreement: Agreement


def open_market(
    *, dataset_epsilon: float = 4.0, share: float | None = None, calls: int = 50, group_by: str = ""
) -> Market:
    _, provider_api = funded_user("hospital", Role.PROVIDER)
    consumer, consumer_api = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
    dataset = ingest_dataset(
        provider_api,
        attack_csv(),
        public_value_columns="region",
        privacy_epsilon=str(dataset_epsilon),
        encryption='{"bounds": {"age": [0, 120], "cost": [0, 50000], "bmi": [10, 70], "rare": [0, 1]},'
        ' "buckets": {"age": [20, 30, 40, 50, 60, 70, 80, 90]}'
        + (f', "group_by": {group_by}' if group_by else "")
        + "}",
    )
    offer = publish_offer(
        provider_api,
        dataset,
        operations=["count", "sum", "mean", "group_by", "histogram", "covariance", "linear_regression"],
        privacy_budget=share if share is not None else dataset_epsilon,
        max_calls=max(calls, 100),
    )
    agreement = accept_offer(consumer_api, offer, calls=calls)
    return Market(provider_api, consumer, consumer_api, dataset, agreement)


def ask(market: Market, operation: str, params: dict[str, Any], *, epsilon: float = JOB_EPSILON, **extra: Any) -> Job:
    response = run_job(market.consumer_api, market.agreement, operation, params, epsilon=epsilon, **extra)
    assert response.status_code == 202, response.json()
    return wait_job(response.json()["id"], timeout=180)


def assert_withheld(job: Job) -> None:
    assert job.status == Status.WITHHELD, (job.status, job.failure_code, job.result)
    assert job.failure_code == "cohort_too_small"
    assert job.result is None


def exact_aggregates(job: Job) -> list[Any]:
    """The job's aggregates before noise, decrypted from its real result ciphertext."""
    job = Job.objects.select_related("agreement__offer", "dataset").get(pk=job.pk)
    store = EncryptedStore.objects.get(pk=job.dataset_id)
    layout = selectors.encrypted_store_layout(store)
    encrypted = custody._read_result(job)
    return get_operation(job.operation).decrypt(job.params, layout, encrypted, custody._secret_contexts(store))


class Replay:
    """One more release of a job exactly as the custodian makes it: noise, withholding, finish."""

    def __init__(self, job: Job) -> None:
        self.job = Job.objects.select_related("agreement__offer", "dataset").get(pk=job.pk)
        self.aggregates = exact_aggregates(self.job)
        store = EncryptedStore.objects.get(pk=job.dataset_id)
        self.layout = selectors.encrypted_store_layout(store)

    def __call__(self) -> dict[str, Any] | None:
        noisy = custody._noised(self.aggregates, self.job.rho)
        minimum = self.job.agreement.offer.min_cohort
        if custody.withheld_for_cohort(self.aggregates, noisy.values, minimum) is not None:
            return None
        released: dict[str, Any] = get_operation(self.job.operation).finish(self.job.params, self.layout, noisy.values)
        return released


def attacker_wins(estimate: Callable[[], float | None], truth: float, bound: float) -> float:
    """The share of ``TRIALS`` replays in which every answer the attack needs is released and its
    estimate lies within ``bound`` of the truth."""
    wins = 0
    for _ in range(TRIALS):
        value = estimate()
        wins += value is not None and abs(value - truth) <= bound
    return wins / TRIALS


# --------------------------------------------------------------------------- rare indicator


def test_rare_indicator_in_a_regression_gives_the_victim_away_in_no_trial(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    """Exact OLS of cost on a column that is 1 for the victim only: intercept + coefficient is the
    victim's cost. Its cohort (the rows where the feature is non-zero) is 1: withheld on most
    noisy counts, and where a noisy count lets it through, XᵀX and Xᵀy carry noise for the
    column's whole range."""
    market = open_market()
    job = ask(market, "linear_regression", {"target": "cost", "features": ["rare"]})
    assert job.status in (Status.WITHHELD, Status.SETTLED), job.failure_message
    body = market.consumer_api.get(f"/api/jobs/{job.id}/").json()
    assert "12345" not in str(body)
    # A refusal decided on the data costs what an answer costs: the call is settled, the loss spent.
    usage = agents.UsageAgreementsAgent().usage(bytes.fromhex(job.chain_job_id[2:]))
    assert usage.status == agents.JobStatus.SETTLED
    assert PrivacyLoss.objects.get(job_id=job.id).status == PrivacyLoss.Status.SPENT
    replay = Replay(job)
    assert min(a.value for a in replay.aggregates if a.name == a.cohorts[0] or a.cohort == a.name) <= 1

    def estimate() -> float | None:
        answer = replay()
        return None if answer is None else answer["intercept"] + answer["coefficients"]["rare"]

    assert attacker_wins(estimate, VICTIM_COST, 2_500.0) <= 0.05


def test_rare_indicator_in_a_covariance_gives_the_victim_away_in_no_trial(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    """cov(rare, cost) * (n - 1) / (1 - 1/n) + mean(cost) is the victim's cost, exactly."""
    market = open_market()
    job = ask(market, "covariance", {"columns": ["rare", "cost"]})
    assert job.status in (Status.WITHHELD, Status.SETTLED)
    replay = Replay(job)

    def estimate() -> float | None:
        answer = replay()
        if answer is None or answer["matrix"] is None:
            return None
        return float(answer["matrix"][0][1] * (answer["count"] - 1))  # = victim's cost - mean cost

    truth = VICTIM_COST - float(attack_table().cost.mean())
    assert attacker_wins(estimate, truth, 2_500.0) <= 0.05


# --------------------------------------------------------------------------- out-of-edge and null rows


def test_out_of_edge_rows_are_a_cell_with_its_own_cohort(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    """The histogram of age has a cell above the last edge holding the victim alone: withheld on
    most noisy counts, and never released close enough to say whether anyone is there."""
    market = open_market()
    job = ask(market, "histogram", {"column": "age"})
    assert job.status in (Status.WITHHELD, Status.SETTLED)
    replay = Replay(job)
    assert {"below", "above"} <= {a.name.split(".")[0] for a in replay.aggregates}  # age has no nulls

    def estimate() -> float | None:
        answer = replay()
        if answer is None:
            return None
        return float(next(cell["count"] for cell in answer["buckets"] if cell.get("bucket") == "above"))

    assert attacker_wins(estimate, 1.0, 0.5) <= 0.05


def test_out_of_edge_rows_by_subtraction_are_lost_in_the_noise(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    """sum(cost) over all rows minus sum(cost) over the age buckets 0..last is the victim's cost
    (aged 99, above the last edge), exactly, without noise."""
    market = open_market()
    everyone = ask(market, "sum", {"column": "cost"})
    inside = ask(market, "sum", {"column": "cost", "where": {"column": "age", "bucket_from": 0, "bucket_to": 6}})
    both = Replay(everyone), Replay(inside)

    def estimate() -> float | None:
        answers = both[0](), both[1]()
        return None if None in answers else answers[0]["sum"] - answers[1]["sum"]  # type: ignore[index]

    assert attacker_wins(estimate, VICTIM_COST, 2_500.0) <= 0.05


# --------------------------------------------------------------------------- differencing


def test_bucket_differencing_cannot_tell_whether_one_person_is_in_a_bucket(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    """count(all) minus count(buckets 0..6) counts the rows outside the edges: here only the
    victim. The attacker wants that 0/1 fact."""
    market = open_market()
    everyone = ask(market, "count", {})
    inside = ask(market, "count", {"where": {"column": "age", "bucket_from": 0, "bucket_to": 6}})
    both = Replay(everyone), Replay(inside)

    def estimate() -> float | None:
        answers = both[0](), both[1]()
        return None if None in answers else answers[0]["count"] - answers[1]["count"]  # type: ignore[index]

    assert attacker_wins(estimate, 1.0, 0.5) <= 0.05


def test_complementary_cells_do_not_give_back_a_small_group(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    """A region of 3 rows: its count from the group-by when a noisy count lets it out, or else as
    the total minus each other region's count."""
    market = open_market()
    grouped = ask(market, "group_by", {"by": "region", "aggregate": "count"})
    assert grouped.status in (Status.WITHHELD, Status.SETTLED)
    group_by, total = Replay(grouped), Replay(ask(market, "count", {}))
    others = [
        Replay(ask(market, "count", {"where": {"column": "region", "equals": region}}))
        for region in ("north", "south", "east", "west")
    ]

    def estimate() -> float | None:
        groups = group_by()
        if groups is not None:
            return float(groups["groups"]["tiny"]["count"])
        answers = [total(), *(replay() for replay in others)]
        if any(answer is None for answer in answers):
            return None
        return answers[0]["count"] - sum(answer["count"] for answer in answers[1:])  # type: ignore[index]

    assert attacker_wins(estimate, 3.0, 1.5) <= 0.05


def test_a_declared_group_by_does_not_give_back_a_small_group(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    """The provider declared region x cost, so the group-by reads product totals summed at ingest
    rather than streaming the chunks: the region of 3 rows must stay as hidden through that path,
    directly or as the total minus the other regions' sums."""
    market = open_market(group_by='{"region": ["cost"]}')
    layout = selectors.encrypted_store_layout(EncryptedStore.objects.get(pk=market.dataset.id))
    assert layout.products  # the declared path is the one under attack
    grouped = ask(market, "group_by", {"by": "region", "aggregate": "sum", "column": "cost"})
    assert grouped.status in (Status.WITHHELD, Status.SETTLED)
    group_by, total = Replay(grouped), Replay(ask(market, "sum", {"column": "cost"}))
    truth = float(attack_table().query("region == 'tiny'")["cost"].sum())

    def estimate() -> float | None:
        groups = group_by()
        if groups is None:
            return None
        if "tiny" in groups["groups"] and groups["groups"]["tiny"].get("sum") is not None:
            return float(groups["groups"]["tiny"]["sum"])
        everyone = total()
        if everyone is None:
            return None
        others = [cell["sum"] for name, cell in groups["groups"].items() if name != "tiny"]
        return None if None in others else everyone["sum"] - sum(others)

    assert attacker_wins(estimate, truth, 2_500.0) <= 0.05


# --------------------------------------------------------------------------- budgets


def test_many_agreements_share_one_dataset_budget(anvil: AnvilNode, celery_worker_process: WorkerProcess) -> None:
    market = open_market(dataset_epsilon=0.5, share=0.5)
    second = accept_offer(market.consumer_api, market.agreement.offer, calls=10)
    fits = 0
    rho_total, rho_job = privacy.rho_of(0.5), privacy.rho_of(JOB_EPSILON)
    while (fits + 1) * rho_job <= rho_total:
        fits += 1
    # Distinct queries (a repeated one would be answered from the cache, at no new loss).
    queries = [("count", {"where": {"column": "region", "equals": r}}) for r in ("north", "south", "east", "west")]
    queries += [("mean", {"column": c}) for c in ("age", "cost")]
    assert fits <= len(queries)
    for index, (operation, params) in enumerate(queries[:fits]):
        agreement = market.agreement if index % 2 == 0 else second
        response = run_job(market.consumer_api, agreement, operation, params, epsilon=JOB_EPSILON)
        assert response.status_code == 202, response.json()
    refused = run_job(market.consumer_api, second, "mean", {"column": "bmi"}, epsilon=JOB_EPSILON)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "budget_exhausted"
    # A second consumer with their own agreement finds the same budget spent.
    _, other_api = funded_user("lab2", Role.CONSUMER, tokens=TOKENS)
    third = accept_offer(other_api, market.agreement.offer, calls=5)
    again = run_job(other_api, third, "mean", {"column": "bmi"}, epsilon=JOB_EPSILON)
    assert again.json()["error"]["code"] == "budget_exhausted"


def test_repeated_queries_get_the_same_answer_and_spend_once(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    market = open_market()
    jobs = [ask(market, "mean", {"column": "bmi"}) for _ in range(4)]
    assert all(job.status == Status.SETTLED for job in jobs)
    assert len({repr(job.result) for job in jobs}) == 1  # no fresh noise to average away
    losses = PrivacyLoss.objects.filter(job_id__in=[job.id for job in jobs])
    assert [loss.status for loss in losses] == [PrivacyLoss.Status.SPENT]  # only the first reserved any
    provider = wallet_address(user_id=market.dataset.provider_id)
    on_chain = agents.UsageAgreementsAgent().dataset_privacy(market.dataset.id, provider=provider)
    assert on_chain.used == rho_nano(jobs[0].rho)


# --------------------------------------------------------------------------- the refusal oracle


def test_the_policy_is_checked_before_anything_that_depends_on_the_data(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    market = open_market()
    small = {"by": "region", "aggregate": "count"}  # a 3-row group: withheld if it ran
    wrong_purpose = run_job(market.consumer_api, market.agreement, "group_by", small, purpose="marketing", epsilon=0.1)
    assert wrong_purpose.json()["error"]["code"] == "purpose_not_allowed"
    too_much = run_job(market.consumer_api, market.agreement, "group_by", small, epsilon=100.0)
    assert too_much.json()["error"]["code"] == "budget_exhausted"
    Agreement.objects.filter(pk=market.agreement.pk).update(expires_at=market.agreement.expires_at.replace(year=2001))  # type: ignore[union-attr]
    expired = run_job(market.consumer_api, market.agreement, "group_by", small, epsilon=0.1)
    assert expired.json()["error"]["code"] == "agreement_expired"
    assert not Job.objects.exists()  # nothing reached the data, nothing charged


# --------------------------------------------------------------------------- metadata


def test_metadata_shows_edges_to_agreement_holders_only_and_never_hidden_categories(
    anvil: AnvilNode, celery_worker_process: WorkerProcess
) -> None:
    market = open_market()
    url = f"/api/datasets/{market.dataset.id}/encrypted-store/"
    holder = market.consumer_api.get(url).json()
    stranger = client_for(make_user("stranger", Role.CONSUMER)).get(url).json()
    age = {c["name"]: c for c in holder["columns"]}["age"]
    assert age["bucket_edges"][1:-1] == AGE_EDGES[1:-1]
    assert all("bucket_edges" not in column for column in stranger["columns"])
    for params in ({"by": "clinic", "aggregate": "count"},):
        refused = run_job(market.consumer_api, market.agreement, "group_by", params, epsilon=0.1)
        assert refused.json()["error"]["code"] == "column_not_public"
    guessed = run_job(
        market.consumer_api, market.agreement, "count", {"where": {"column": "clinic", "equals": "st-x"}}, epsilon=0.1
    )
    assert guessed.json()["error"]["code"] == "column_not_public"
    for body in (holder, stranger, guessed.json()):
        assert not any(name in str(body) for name in HIDDEN_CLINICS)
