"""The OpenAPI 3 document: valid, complete, and every operation documents its errors."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from dataspace.accounts.models import Role, User
from dataspace.compute.models import Job
from dataspace.policies import odrl
from dataspace.policies.models import Agreement, Offer
from tests.support.datasets import ready_dataset
from tests.support.openapi import assert_conforms, response_schema, served_schema
from tests.support.users import client_for, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def test_schema_generates_without_warnings() -> None:
    # --fail-on-warn turns any ambiguity in the generated schema into a failure.
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO())


def test_every_operation_documents_its_errors(consumer: User) -> None:
    schema = client_for(consumer).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert schema["openapi"].startswith("3.")
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method != "parameters"
    ]
    assert len(operations) >= 12
    cannot_fail = {("/catalog.jsonld", "get"), ("/api/schema/", "get")}  # public, no input
    for path, method, op in operations:
        if (path, method) in cannot_fail:
            continue
        errors = [code for code in op["responses"] if code.startswith(("4", "5"))]
        assert errors, f"{method.upper()} {path} documents no error response"
    assert "/api/datasets/" in schema["paths"]
    upload = schema["paths"]["/api/datasets/"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"400", "413"} <= set(upload["responses"])


def test_swagger_ui_is_served_without_a_cdn(consumer: User) -> None:
    response = client_for(consumer).get("/api/docs/")
    assert response.status_code == 200
    assert b"cdn.jsdelivr" not in response.content


@pytest.fixture
def lists() -> dict[str, User]:
    """One row in each of the five lists, and who may read it."""
    owner = make_user("owner", Role.PROVIDER)
    consumer = make_user("lab", Role.CONSUMER)
    dataset = ready_dataset(owner, b"age,region\n" + b"".join(f"{20 + i},{'ns'[i % 2]}\n".encode() for i in range(30)))
    terms = odrl.Terms(["research"], ["mean"], 5, 1, 86400, 0.0, 10)
    offer = Offer.objects.create(
        dataset=dataset,
        provider=owner,
        purposes=["research"],
        operations=["mean"],
        max_calls=5,
        price_per_call=1,
        duration_seconds=86400,
        policy=odrl.policy_document(offer_id=dataset.id, dataset_id=dataset.id, provider="0x0", terms=terms),
        policy_hash="0x" + "00" * 32,
        status=Offer.Status.PUBLISHED,
        chain_offer_id=1,
    )
    agreement = Agreement.objects.create(
        offer=offer, consumer=consumer, calls=5, amount=5, status=Agreement.Status.ACTIVE, chain_agreement_id=1
    )
    Job.objects.create(
        consumer=consumer,
        agreement=agreement,
        dataset=dataset,
        idempotency_key="k",
        request_digest="0" * 64,
        operation="mean",
        params={"column": "age"},
        purpose="research",
        nonce=1,
        chain_job_id="0x" + "11" * 32,
        deadline=0,
        signature="0x",
        status=Job.Status.SETTLED,
        result={"mean": 34.5},
        result_hash="0x" + "22" * 32,
        receipt={"signature": "0x"},
    )
    return {"datasets": consumer, "ingests": owner, "offers": consumer, "agreements": consumer, "jobs": consumer}


@pytest.mark.parametrize("name", ["datasets", "ingests", "offers", "agreements", "jobs"])
def test_list_endpoints_return_the_documented_page(lists: dict[str, User], name: str) -> None:
    client = client_for(lists[name])
    document = served_schema(client)
    response = client.get(f"/api/{name}/", {"limit": 1})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert len(body["results"]) == 1  # the item schema is checked on a real item, not an empty list
    assert_conforms(body, response_schema(document, f"/api/{name}/", "get", 200))
    assert {"limit", "offset"} <= {p["name"] for p in document["paths"][f"/api/{name}/"]["get"]["parameters"]}
