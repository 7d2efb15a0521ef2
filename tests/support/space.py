"""A data space driven through its REST doors, for end-to-end tests against real services:
users with funded custodial wallets, a dataset with its encrypted store, an offer, an agreement."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyarrow import csv as pa_csv
from rest_framework.test import APIClient

from dataspace.accounts.models import Role, User
from dataspace.accounts.services import wallet_create_custodial
from dataspace.catalog.models import Dataset
from dataspace.chain import agents, outbox
from dataspace.chain.models import ChainTransaction
from dataspace.compute.models import EncryptedStore, Job
from dataspace.policies.models import Agreement, Offer
from dataspace.privacy.onchain import terms_on_chain
from tests.support.anvil import AnvilNode
from tests.support.users import client_for, make_user, upload
from tests.support.waiting import wait_for, wait_for_ingest
from tests.support.workers import WorkerProcess

TOKENS = 10**24  # a million tokens of 18 decimals
PRICE = 10**18


@dataclass(frozen=True)
class Space:
    """A running data space: its chain node and worker, a provider with a dataset whose
    encrypted store is ready, and a consumer holding tokens; each user with an API client."""

    anvil: AnvilNode
    worker: WorkerProcess
    provider: User
    provider_api: APIClient
    consumer: User
    consumer_api: APIClient
    dataset: Dataset


def funded_user(name: str, *roles: Role, tokens: int = 0) -> tuple[User, APIClient]:
    user = make_user(name, *roles)
    wallet = wallet_create_custodial(user=user)
    agents.fund_for_gas(address=wallet.address, wei=10**20)
    if tokens:
        mint = agents.DevTokenAgent().mint(to=wallet.address, amount=tokens, key=f"test-mint:{name}")
        assert outbox.write_progress(tx_id=mint.pk).status == ChainTransaction.Status.CONFIRMED
    return user, client_for(user)


def table_of(content: bytes) -> pa.Table:
    return pa_csv.read_csv(io.BytesIO(content))


def ingest_dataset(client: APIClient, content: bytes, **fields: Any) -> Dataset:
    response = upload(client, content, title=fields.pop("title", "Hospital registry"), **fields)
    assert response.status_code == 202, response.json()
    ingest = wait_for_ingest(response.json()["id"])
    assert ingest.dataset_id is not None, ingest.error_message
    dataset_id = ingest.dataset_id

    def ready() -> bool:
        dataset = Dataset.objects.get(pk=dataset_id)
        return (
            EncryptedStore.objects.filter(dataset=dataset, status="ready").exists()
            and dataset.chain_registration is not None
            and dataset.chain_registration.status == "confirmed"
            and terms_on_chain(dataset=dataset)
        )

    wait_for(ready, timeout=180)
    return Dataset.objects.get(pk=dataset_id)


def publish_offer(client: APIClient, dataset: Dataset, **terms: Any) -> Offer:
    body = {
        "dataset": str(dataset.id),
        "purposes": ["research"],
        "operations": ["count", "mean", "group_by", "linear_regression"],
        "max_calls": 100,
        "price_per_call": PRICE,
        "duration_days": 30,
        "min_cohort": 10,
        **terms,
    }
    response = client.post("/api/offers/", body, format="json")
    assert response.status_code == 202, response.json()
    offer_id = response.json()["id"]
    wait_for(lambda: Offer.objects.get(pk=offer_id).status != Offer.Status.PENDING, timeout=60)
    offer = Offer.objects.get(pk=offer_id)
    assert offer.status == Offer.Status.PUBLISHED, offer.failure
    return offer


def accept_offer(client: APIClient, offer: Offer, calls: int) -> Agreement:
    response = client.post("/api/agreements/", {"offer": str(offer.id), "calls": calls}, format="json")
    assert response.status_code == 202, response.json()
    agreement_id = response.json()["id"]
    wait_for(lambda: Agreement.objects.get(pk=agreement_id).status != Agreement.Status.PENDING, timeout=60)
    agreement = Agreement.objects.get(pk=agreement_id)
    assert agreement.status == Agreement.Status.ACTIVE, agreement.failure
    return agreement


def run_job(client: APIClient, agreement: Agreement, operation: str, params: dict[str, Any], **extra: Any) -> Any:
    body = {"agreement": str(agreement.id), "operation": operation, "params": params, "purpose": "research", **extra}
    return client.post("/api/jobs/", body, format="json")


def wait_job(job_id: str, *, timeout: float = 120) -> Job:
    final = {Job.Status.SETTLED, Job.Status.WITHHELD, Job.Status.REFUNDED, Job.Status.REJECTED}
    wait_for(lambda: Job.objects.get(pk=job_id).status in final, timeout=timeout)
    return Job.objects.get(pk=job_id)


def close_to(actual: Any, expected: Any, tolerance: float) -> bool:
    """Numbers compared relatively (|a - e| <= tol * max(1, |e|)), structures recursively."""
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == expected.keys()
            and all(close_to(actual[k], expected[k], tolerance) for k in expected)
        )
    if isinstance(expected, list | tuple):
        return len(actual) == len(expected) and all(
            close_to(a, e, tolerance) for a, e in zip(actual, expected, strict=True)
        )
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        return abs(float(actual) - float(expected)) <= tolerance * max(1.0, abs(float(expected)))
    return bool(actual == expected)
