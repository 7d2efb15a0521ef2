"""ISSUE-15: the React portal and explorer in a real browser (Debian's Chromium driven by
Playwright) against a running Redlake: the live Django server, a real Celery worker process, anvil.

A provider uploads (bytes sent, then the ingest's percent), sets bounds and public columns,
publishes an offer that also allows submitted algorithms in the sandbox; a consumer submits an
algorithm (REST), and the provider, alerted on the dashboard, reads its code, measurement and
asker and approves it (pinned on chain); the consumer accepts the offer and runs a job to its
settlement; an auditor opens the job in the explorer, sees the consumer's signature recovered and
the job's transactions decoded, and verifies the receipt the consumer shares (and sees a tampered
copy fail); the provider sees the usage chart go from no jobs to the job and withdraws; the
reconciliation is clean, then shows a row tampered in the database. Screenshots of each page in
English and Chinese are saved under $REDLAKE_VAR_DIR/screenshots/.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from dataspace.accounts.models import Role
from dataspace.audit import services as audit_services
from dataspace.catalog.models import Dataset, Ingest
from dataspace.chain import agents
from dataspace.chain.models import ChainTransaction
from dataspace.compute.models import Algorithm, EncryptedStore, Job
from dataspace.policies.models import Offer
from dataspace.privacy.onchain import terms_on_chain
from tests.enclaves.conftest import requires_sandbox
from tests.integration.test_jobs import DECLARED, registry_csv
from tests.support.browser import CHROMIUM, chromium
from tests.support.space import TOKENS, accept_offer, funded_user, ingest_dataset, publish_offer, run_job, wait_job
from tests.support.waiting import wait_for
from tests.support.workers import celery_env, start_worker

DIST = Path(django_settings.FRONTEND_DIST) / "index.html"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not DIST.exists(), reason="the portal is not built (make install builds frontend/dist)"),
]
WAIT_MS = 150_000  # the slowest step: ingest, HE keys and the store built by the worker
# A consumer's algorithm for the offer; on a personal dataset every number it returns is bounded.
MEAN_AGE = """
def run(tables, params):
    ages = tables["data"].column("age").to_pylist()
    return {"mean_age": sum(ages) / len(ages)}
"""
MEAN_AGE_SCHEMA = {
    "type": "object",
    "properties": {"mean_age": {"type": "number", "minimum": 0, "maximum": 120}},
    "required": ["mean_age"],
}


@pytest.fixture
def browser(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with chromium(settings, monkeypatch) as launched:
        yield launched


class Shots:
    """Every page in both languages, as test artefacts."""

    def __init__(self) -> None:
        self.dir = Path(os.environ.get("REDLAKE_VAR_DIR", "var/test")) / "screenshots"
        self.dir.mkdir(parents=True, exist_ok=True)

    def take(self, page: Any, name: str) -> None:
        page.screenshot(path=str(self.dir / f"{name}-en.png"), full_page=True)
        page.select_option("header select", "zh")
        page.wait_for_selector("html >> text=退出登录")
        page.screenshot(path=str(self.dir / f"{name}-zh.png"), full_page=True)
        page.select_option("header select", "en")
        page.wait_for_selector("text=Log out")


def log_in(browser: Any, url: str, username: str) -> Any:
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{url}/login/?next=/")
    page.fill("#id_username", username)
    page.fill("#id_password", f"pw-{username}-0123456789")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Log out")
    return page


def dataset_ready(dataset_id: Any) -> bool:
    dataset = Dataset.objects.get(pk=dataset_id)
    return (
        EncryptedStore.objects.filter(dataset=dataset, status="ready").exists()
        and dataset.chain_registration is not None
        and dataset.chain_registration.status == "confirmed"
        and terms_on_chain(dataset=dataset)
    )


def test_provider_consumer_and_auditor_in_the_browser(
    anvil: Any, celery_worker_process: Any, live_server: Any, browser: Any, tmp_path: Path
) -> None:
    funded_user("prov", Role.PROVIDER)
    _, consumer_api = funded_user("cons", Role.CONSUMER, tokens=TOKENS)
    funded_user("audi", Role.AUDITOR)
    shots = Shots()
    url = live_server.url
    csv = tmp_path / "clinic.csv"
    regions = ["north", "south", "east"]
    csv.write_text(
        "age,region,cost\n" + "".join(f"{20 + i % 60},{regions[i % 3]},{100 + i % 7 * 10}\n" for i in range(600))
    )

    # Provider: upload with the schema settings, watch both progress bars.
    provider = log_in(browser, url, "prov")
    provider.wait_for_selector("text=Provider dashboard")
    provider.goto(f"{url}/#/provider/upload")
    provider.set_input_files("#file", str(csv))
    provider.wait_for_selector("tr[data-column=age]")
    provider.fill("[aria-label='Lower bound of age']", "0")
    provider.fill("[aria-label='Upper bound of age']", "120")
    provider.fill("[aria-label='Bucket edges of age']", "30, 50, 70")
    provider.check("[aria-label='Values of region public']")
    # A declared group-by: cost's sums per region are prepared at ingest (product totals).
    provider.select_option("[aria-label='Group-by sums of region']", ["cost"])
    provider.fill("#title", "Clinic visits")
    provider.fill("#keywords", "health, visits")
    shots.take(provider, "upload")
    provider.click("form button[type=submit]")
    provider.wait_for_selector("[data-testid=sent-percent] >> text=100%")
    provider.wait_for_selector("[data-testid=ingest][data-status=succeeded]")
    assert provider.get_attribute("#ingest-progress", "value") == "100"
    ingest = Ingest.objects.get()
    assert ingest.dataset is not None
    dataset = ingest.dataset
    assert dataset.public_value_columns == ["region"]
    wait_for(lambda: dataset_ready(dataset.id), timeout=150)
    products = EncryptedStore.objects.get(dataset=dataset, status="ready").layout["products"]
    assert {tuple(p["keys"]) for p in products} >= {("num:cost", "cat:region:0")}

    # Provider: the offer (submitted algorithms allowed, in the sandbox), its ODRL beside the
    # form, then the transaction's status.
    provider.goto(f"{url}/#/provider/offer/{dataset.id}")
    provider.wait_for_selector("[data-testid=odrl] >> text=redlake:minCohort")
    provider.fill("#price", "2")
    provider.fill("#budget", "1")
    provider.check("#allow-algorithms")
    provider.check("#allow-sandbox")
    provider.wait_for_selector("[data-testid=odrl] >> text=redlake:allowSandbox")
    shots.take(provider, "offer-editor")
    provider.click("text=Publish on chain")
    provider.wait_for_selector("[data-testid=offer-status][data-status=published]")
    assert "2000000000000000000" in provider.inner_text("[data-testid=odrl]")
    offer = Offer.objects.get()
    assert "algorithm" in offer.operations
    assert offer.allow_sandbox
    published = {c["leftOperand"]: c["rightOperand"] for c in offer.policy["permission"][0]["constraint"]}
    assert published["redlake:allowSandbox"] is True

    # Consumer (REST): an algorithm for the offer. Provider: the dashboard's alert, the approval
    # page with the code, its measurement and who asked; approved in the browser, pinned on chain.
    submitted = consumer_api.post(
        "/api/algorithms/",
        {
            "offer": str(offer.id),
            "name": "mean age",
            "kind": "python",
            "source": MEAN_AGE,
            "output_schema": MEAN_AGE_SCHEMA,
            "max_output_bytes": 1024,
        },
        format="json",
    )
    assert submitted.status_code == 201, submitted.json()
    algorithm = Algorithm.objects.get(pk=submitted.json()["id"])
    provider.goto(f"{url}/#/provider")
    provider.wait_for_selector("[data-testid=algorithm-alert] >> text=1 algorithm(s) await your approval")
    provider.click("[data-testid=algorithm-alert] a")
    card = f"[data-testid=algorithm][data-status=pending]:has-text('{algorithm.measurement}')"
    provider.wait_for_selector(card)
    shown = provider.inner_text(card)
    assert provider.inner_text(f"{card} dt:text-is('Asked by') + dd") == "cons"
    assert algorithm.bundle_sha256 in shown
    assert 'ages = tables["data"].column("age").to_pylist()' in shown  # the code itself
    shots.take(provider, "algorithms")
    provider.click(f"{card} >> button:text-is('Approve')")
    provider.wait_for_selector("[data-testid=algorithm][data-status=approved]")
    algorithm.refresh_from_db()
    assert algorithm.status == Algorithm.Status.APPROVED
    assert algorithm.approve_tx is not None
    assert algorithm.approve_tx.status == ChainTransaction.Status.CONFIRMED
    assert agents.AlgorithmApprovalsAgent().is_approved(
        offer_id=offer.chain_offer_id,  # type: ignore[arg-type]
        measurement=bytes.fromhex(algorithm.measurement),
        tee_type=agents.TeeBit.SANDBOX,
    )
    assert consumer_api.get(f"/api/algorithms/{algorithm.id}/").json()["status"] == "approved"
    shots.take(provider, "algorithms-approved")
    # Before any job: no usage to chart, nothing to withdraw (the chart's move is measured from here).
    provider.goto(f"{url}/#/provider")
    provider.wait_for_selector("#jobs >> text=No jobs yet.")
    provider.wait_for_selector("[data-testid=withdrawable] >> text=/^0$/")

    # Consumer: the catalogue's search and filters, the dataset page, accept, the generated form,
    # the job through its states.
    consumer = log_in(browser, url, "cons")
    consumer.wait_for_selector("h1:text-is('Catalogue')")
    consumer.fill("[role=search] >> label:has-text('Keyword') >> input", "finance")
    consumer.wait_for_selector("text=No dataset matches.")
    consumer.fill("[role=search] >> label:has-text('Keyword') >> input", "health")
    consumer.fill("[role=search] input[type=search]", "clinic")
    consumer.select_option("[role=search] select", "csv")
    consumer.wait_for_selector("a:has-text('Clinic visits')")
    shots.take(consumer, "catalogue")
    consumer.click("a:has-text('Clinic visits')")
    consumer.wait_for_selector("text=Accept offer")
    assert str(dataset.id) in consumer.url
    assert "north" in consumer.inner_text("#schema")  # a public column shows its values
    shots.take(consumer, "dataset")
    consumer.fill("[data-offer] input[type=number]", "3")
    consumer.click("text=Accept offer")
    consumer.wait_for_selector("[data-testid=agreement-status][data-status=active]")
    consumer.click("text=Run a computation")
    consumer.select_option("#operation", "mean")
    consumer.select_option("#param-column", "age")
    consumer.fill("#job-epsilon", "0.5")
    shots.take(consumer, "run-job")
    consumer.click("form button[type=submit]")
    consumer.wait_for_selector("[data-testid=result]")
    consumer.wait_for_selector("[data-testid=shared-receipt] >> text=result_salt")
    shared = consumer.input_value("[data-testid=shared-receipt]")
    shots.take(consumer, "job")
    job = Job.objects.get()
    assert job.status == Job.Status.SETTLED
    assert json.loads(shared)["receipt"]["result_sha256"] == job.result_hash
    consumer.goto(f"{url}/#/consumer")
    consumer.wait_for_selector(f"a[href='#/consumer/jobs/{job.id}']")
    shots.take(consumer, "jobs")

    # Auditor: the latest transactions, decoded; the job's record and signature; verify.
    auditor = log_in(browser, url, "audi")
    auditor.goto(f"{url}/#/explorer")
    auditor.wait_for_selector("[data-testid=latest-txs] >> text=UsageAgreements.settle")
    shots.take(auditor, "explorer")
    settle_tx = job.settle_tx.tx_hash  # type: ignore[union-attr]
    auditor.goto(f"{url}/#/explorer/tx/{settle_tx}")
    auditor.wait_for_selector("[data-testid=function] >> text=UsageAgreements.settle")
    assert "JobSettled" in auditor.inner_text("[data-testid=events]")
    shots.take(auditor, "transaction")
    auditor.goto(f"{url}/#/explorer/agreement/{job.agreement.chain_agreement_id}")
    auditor.wait_for_selector("[data-testid=timeline] >> text=JobSettled")
    assert "AgreementCreated" in auditor.inner_text("[data-testid=timeline]")
    shots.take(auditor, "agreement")

    auditor.goto(f"{url}/#/explorer/job/{job.chain_job_id}")
    auditor.wait_for_selector("[data-testid=signer] >> text=the agreement's consumer")
    # The job's own transactions, found from its page: the usage record and the settlement, decoded.
    auditor.wait_for_selector("#usage li >> text=JobSettled")
    auditor.click("#usage li:has-text('UsageRecorded') a")
    auditor.wait_for_selector("[data-testid=function] >> text=UsageAgreements.recordUsage")
    assert job.record_tx is not None
    assert job.record_tx.tx_hash.lower() in auditor.url.lower()
    assert "UsageRecorded" in auditor.inner_text("[data-testid=events]")
    auditor.go_back()
    auditor.wait_for_selector("[data-testid=signer] >> text=the agreement's consumer")
    assert "result_salt" not in auditor.inner_text("#platform")  # the platform withholds the salt
    auditor.fill("#shared", shared)
    auditor.click("button:text-is('Verify')")
    auditor.wait_for_selector("[data-testid=checks]")
    assert auditor.get_attribute("[data-testid=checks]", "data-ok") == "true", auditor.inner_text("#verify")
    shots.take(auditor, "verify-pass")

    tampered = json.loads(shared)
    tampered["result"] = _bump_first_number(tampered["result"])
    auditor.fill("#shared", json.dumps(tampered))
    auditor.click("button:text-is('Verify')")
    auditor.wait_for_selector("[data-testid=checks][data-ok=false]")
    assert auditor.get_attribute("[data-check=commitment]", "data-ok") == "false"
    assert auditor.get_attribute("[data-check=signature]", "data-ok") == "true"  # the receipt itself is intact
    shots.take(auditor, "verify-fail")

    # Provider: the usage chart counts the settled job; the earnings are withdrawn on chain.
    # The page still shows the dashboard as it was before the job: load it afresh.
    provider.reload()
    provider.wait_for_selector("[data-testid=usage-charts][data-calls='1']")
    provider.wait_for_selector("[data-testid=withdrawable] >> text=/^2$/")
    shots.take(provider, "dashboard")
    provider.click("button:text-is('Withdraw')")
    provider.wait_for_selector("[data-testid=withdrawable] >> text=/^0$/")

    # Auditor: reconciliation clean, then a job row tampered in the database is a divergence.
    audit_services.reconcile_run()
    auditor.goto(f"{url}/#/explorer/reconcile")
    auditor.wait_for_selector("[data-testid=reconcile][data-ok=true]")
    shots.take(auditor, "reconcile-clean")
    Job.objects.filter(pk=job.pk).update(result_hash="0x" + "00" * 32)
    audit_services.reconcile_run()
    auditor.reload()
    auditor.wait_for_selector("[data-testid=reconcile][data-ok=false]")
    assert "result hash on chain differs" in auditor.inner_text("[data-testid=reconcile]")
    shots.take(auditor, "reconcile-divergence")


@requires_sandbox
def test_an_approved_algorithm_runs_in_the_sandbox_and_says_simulated_in_the_browser(
    anvil: Any, celery_worker_process: Any, live_server: Any, browser: Any, tmp_path: Path
) -> None:
    """The consumer's side of an approved algorithm: its job (run over REST, in the sandbox on the
    custodian's ``tee`` worker) on the job page labelled SIMULATED, and its shared receipt verified
    in the explorer, the attestation hash included."""
    tee_worker = start_worker(celery_env(), tmp_path / "tee-worker.log", queues="tee")
    try:
        _, provider_api = funded_user("prov", Role.PROVIDER)
        _, consumer_api = funded_user("cons", Role.CONSUMER, tokens=TOKENS)
        _, auditor_api = funded_user("audi", Role.AUDITOR)
        shots = Shots()
        url = live_server.url
        dataset = ingest_dataset(provider_api, registry_csv(600), **DECLARED)  # personal: answers noised
        offer = publish_offer(
            provider_api, dataset, operations=["algorithm"], allow_sandbox=True, memory_limit_bytes=768 * 2**20
        )
        agreement = accept_offer(consumer_api, offer, calls=2)
        body = {"offer": str(offer.id), "name": "mean age", "kind": "python", "source": MEAN_AGE}
        submitted = consumer_api.post(
            "/api/algorithms/", {**body, "output_schema": MEAN_AGE_SCHEMA, "max_output_bytes": 1024}, format="json"
        )
        assert submitted.status_code == 201, submitted.json()
        approved = provider_api.post(f"/api/algorithms/{submitted.json()['id']}/approve/", {}, format="json")
        assert approved.status_code == 202, approved.json()
        wait_for(
            lambda: Algorithm.objects.get(pk=submitted.json()["id"]).status == Algorithm.Status.APPROVED, timeout=60
        )
        response = run_job(
            consumer_api, agreement, "algorithm", {"algorithm": submitted.json()["id"], "params": {}}, epsilon=0.5
        )
        assert response.status_code == 202, response.json()
        job = wait_job(response.json()["id"], timeout=240)
        assert job.status == Job.Status.SETTLED, (job.failure_code, job.failure_message)

        consumer = log_in(browser, url, "cons")
        consumer.goto(f"{url}/#/consumer")
        consumer.click(f"a[href='#/consumer/jobs/{job.id}']")
        consumer.wait_for_selector("[data-testid=tee][data-label=SIMULATED]")
        assert submitted.json()["measurement"] in consumer.inner_text("main")
        assert "mean_age" in consumer.inner_text("[data-testid=result]")
        consumer.wait_for_selector("[data-testid=shared-receipt] >> text=result_salt")
        shared = consumer.input_value("[data-testid=shared-receipt]")
        assert json.loads(shared)["receipt"]["tee"]["label"] == "SIMULATED"
        shots.take(consumer, "job-algorithm")

        auditor = log_in(browser, url, "audi")
        auditor.goto(f"{url}/#/explorer/job/{job.chain_job_id}")
        auditor.wait_for_selector("[data-testid=signer] >> text=the agreement's consumer")
        auditor.fill("#shared", shared)
        auditor.click("button:text-is('Verify')")
        auditor.wait_for_selector("[data-testid=checks]")
        assert auditor.get_attribute("[data-testid=checks]", "data-ok") == "true", auditor.inner_text("#verify")
        assert auditor.get_attribute("[data-check=attestation]", "data-ok") == "true"
        shots.take(auditor, "verify-algorithm")
        # The platform's own check of a shared receipt agrees (the enclave's attestation is what the chain pins).
        checked = auditor_api.post(
            "/api/audit/receipts/verify/", {"receipt": json.loads(shared)["receipt"]}, format="json"
        )
        assert checked.status_code == 200, checked.json()
    finally:
        tee_worker.stop()


def _bump_first_number(value: Any) -> Any:
    """The result with its first number changed (the same shape, so only the hashes can tell)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, dict):
        for key, item in value.items():
            bumped = _bump_first_number(item)
            if bumped != item:
                return {**value, key: bumped}
    if isinstance(value, list):
        for k, item in enumerate(value):
            bumped = _bump_first_number(item)
            if bumped != item:
                return [*value[:k], bumped, *value[k + 1 :]]
    return value
