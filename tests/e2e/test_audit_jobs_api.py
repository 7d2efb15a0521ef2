"""ISSUE-15: auditors list jobs and read their public parts; never a result or its salt."""

from __future__ import annotations

from typing import Any

import pytest

from dataspace.accounts.models import User
from dataspace.compute.models import Job
from dataspace.policies import odrl
from dataspace.policies.models import Agreement, Offer
from tests.support.datasets import ready_dataset
from tests.support.users import client_for

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

SALT = "0x" + "ab" * 32


def _job(provider: User, consumer: User, *, title: str = "d", status: Job.Status = Job.Status.SETTLED) -> Job:
    dataset = ready_dataset(provider, b"age,region\n" + b"".join(b"%d,n\n" % (20 + i) for i in range(30)), title=title)
    terms = odrl.Terms(["research"], ["mean"], 5, 1, 86400, 0.0, 10)
    offer = Offer.objects.create(
        dataset=dataset,
        provider=provider,
        purposes=["research"],
        operations=["mean"],
        max_calls=5,
        price_per_call=7,
        duration_seconds=86400,
        policy=odrl.policy_document(offer_id=dataset.id, dataset_id=dataset.id, provider="0x0", terms=terms),
        policy_hash="0x" + "00" * 32,
        status=Offer.Status.PUBLISHED,
        chain_offer_id=Offer.objects.count() + 1,
    )
    agreement = Agreement.objects.create(
        offer=offer,
        consumer=consumer,
        calls=5,
        amount=35,
        status=Agreement.Status.ACTIVE,
        chain_agreement_id=Agreement.objects.count() + 1,
    )
    return Job.objects.create(
        consumer=consumer,
        agreement=agreement,
        dataset=dataset,
        idempotency_key=f"k{Job.objects.count()}",
        request_digest="0" * 64,
        operation="mean",
        params={"column": "age"},
        purpose="research",
        nonce=1,
        chain_job_id="0x" + f"{Job.objects.count() + 1:064x}",
        deadline=0,
        signature="0x",
        status=status,
        result={"mean": 34.5},
        result_hash="0x" + "22" * 32,
        receipt={"job_id": "0x11", "result_sha256": "0x" + "22" * 32, "result_salt": SALT, "signature": "0x99"},
    )


def test_auditor_lists_every_job_with_its_public_parts(provider: User, consumer: User, auditor: User) -> None:
    job = _job(provider, consumer)
    body = client_for(auditor).get("/api/audit/jobs/").json()
    assert body["count"] == 1
    row = body["results"][0]
    assert row["id"] == str(job.id)
    assert row["status"] == "settled"
    assert row["chain_job_id"] == job.chain_job_id
    assert row["chain_agreement_id"] == job.agreement.chain_agreement_id
    assert row["result_hash"] == "0x" + "22" * 32
    assert row["price"] == "7"
    assert set(row["transactions"]) == {"record_usage", "settle", "refund"}


def test_auditor_never_sees_the_result_or_the_salt(provider: User, consumer: User, auditor: User) -> None:
    job = _job(provider, consumer)
    response = client_for(auditor).get(f"/api/audit/jobs/{job.id}/")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert "result" not in body
    assert "params" not in body
    assert body["receipt"] == {"job_id": "0x11", "result_sha256": "0x" + "22" * 32, "signature": "0x99"}
    assert SALT not in response.content.decode()
    assert "34.5" not in response.content.decode()


def test_the_receipt_is_shown_only_once_settled_or_withheld(provider: User, consumer: User, auditor: User) -> None:
    job = _job(provider, consumer, status=Job.Status.COMPUTED)
    assert client_for(auditor).get(f"/api/audit/jobs/{job.id}/").json()["receipt"] is None


def test_filters_by_dataset_agreement_and_status(provider: User, consumer: User, auditor: User) -> None:
    first = _job(provider, consumer, title="one")
    second = _job(provider, consumer, title="two", status=Job.Status.REFUNDED)
    api = client_for(auditor)
    assert [r["id"] for r in api.get(f"/api/audit/jobs/?dataset={first.dataset_id}").json()["results"]] == [
        str(first.id)
    ]
    assert [r["id"] for r in api.get(f"/api/audit/jobs/?agreement={second.agreement_id}").json()["results"]] == [
        str(second.id)
    ]
    assert [r["id"] for r in api.get("/api/audit/jobs/?status=refunded").json()["results"]] == [str(second.id)]
    by_chain_id = api.get(f"/api/audit/jobs/?chain_job_id={second.chain_job_id}").json()["results"]
    assert [r["id"] for r in by_chain_id] == [str(second.id)]
    refused = api.get("/api/audit/jobs/?status=bogus")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "validation_failed"


def test_providers_see_only_the_jobs_on_their_datasets(
    provider: User, other_provider: User, consumer: User, auditor: User
) -> None:
    mine = _job(provider, consumer, title="mine")
    theirs = _job(other_provider, consumer, title="theirs")
    rows = client_for(provider).get("/api/audit/jobs/").json()["results"]
    assert [r["id"] for r in rows] == [str(mine.id)]
    assert client_for(provider).get(f"/api/audit/jobs/{theirs.id}/").json()["error"]["code"] == "not_found"


def test_consumers_are_refused(provider: User, consumer: User) -> None:
    _job(provider, consumer)
    response = client_for(consumer).get("/api/audit/jobs/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "role_required"


def test_anonymous_callers_are_refused() -> None:
    assert client_for(None).get("/api/audit/jobs/").status_code == 401
