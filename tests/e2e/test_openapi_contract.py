"""Contract test of the whole OpenAPI document, with schemathesis.

Every operation of the served schema is called with generated requests, as each role (provider,
consumer, auditor, operator) and anonymously, against the real app in-process (WSGI), a real
database and a real anvil node. Every response must be no 5xx, have a documented status code and
content type, and a body that matches the documented schema. Generated path ids are mostly unknown
(404); each request is also sent with the ids of real objects the caller may or may not see.

Cost: schemathesis's coverage phase (boundary and invalid values of every parameter, a few hundred
requests for the largest operations) plus MAX_EXAMPLES fuzzed requests per operation, each sent
as 5 callers (twice where the path has ids): about 6,500 requests over 30 operations, with an
anvil node and a contract deployment per operation; about 30 s on one core. Generation is
derandomized, so a run is reproducible.

Needs ``schemathesis`` (a test requirement, pinned in requirements.txt); skipped where it is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")

from django.core.cache import cache  # noqa: E402
from django.core.signals import request_finished, request_started  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import close_old_connections  # noqa: E402
from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dataspace.accounts.models import Role, User  # noqa: E402
from dataspace.accounts.services import api_token_issue, wallet_create_custodial  # noqa: E402
from dataspace.compute.models import Job  # noqa: E402
from dataspace.policies import odrl  # noqa: E402
from dataspace.policies.models import Agreement, Offer  # noqa: E402
from tests.support.datasets import ready_dataset  # noqa: E402
from tests.support.users import make_user  # noqa: E402

pytestmark = [pytest.mark.django_db]
MAX_EXAMPLES = 8
CALLERS = ["anonymous", "provider", "consumer", "auditor", "operator"]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(autouse=True)
def quiet_refusals() -> Iterator[None]:
    # Thousands of 4xx are the point of this test; a 5xx is still logged (and fails it).
    logger = logging.getLogger("django.request")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@pytest.fixture(autouse=True)
def keep_the_test_transaction() -> Iterator[None]:
    # Django closes a connection at the end of a request when it is inside a transaction, as the
    # test's is; its own test client unhooks the same signal handlers around each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


schema = schemathesis.openapi.from_wsgi(
    "/api/schema/", get_wsgi_application(), headers={"Accept": "application/vnd.oai.openapi+json"}
)


@dataclass
class World:
    headers: dict[str, dict[str, str]]
    # path parameter -> the id of a real object (each caller sees some and not others)
    ids: dict[str, str]


@pytest.fixture
def world(anvil: Any) -> World:
    cache.clear()  # the anonymous throttle's counts
    users = {role: make_user(role, Role(role)) for role in CALLERS if role != "anonymous"}
    for user in users.values():
        wallet_create_custodial(user=user)
    dataset = ready_dataset(users["provider"], b"age,region\n" + b"".join(b"%d,n\n" % (20 + i) for i in range(30)))
    offer = _offer(users["provider"], dataset)
    agreement = Agreement.objects.create(
        offer=offer, consumer=users["consumer"], calls=5, amount=5, status=Agreement.Status.ACTIVE, chain_agreement_id=1
    )
    job = _job(users["consumer"], agreement)
    headers = {"anonymous": {}} | {
        role: {"Authorization": f"Token {api_token_issue(user=u)[1]}"} for role, u in users.items()
    }
    spare, _ = api_token_issue(user=users["consumer"])  # revoked by DELETE /api/auth/tokens/{token_key}/
    ids = {
        "dataset_id": str(dataset.id),
        "ingest_id": str(dataset.ingest.id),  # type: ignore[attr-defined]
        "offer_id": str(offer.id),
        "agreement_id": str(agreement.id),
        "job_id": str(job.id),
        "token_key": spare.token_key,
    }
    return World(headers=headers, ids=ids)


def _offer(provider: User, dataset: Any) -> Offer:
    terms = odrl.Terms(["research"], ["mean"], 5, 1, 86400, 0.0, 10)
    return Offer.objects.create(
        dataset=dataset,
        provider=provider,
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


def _job(consumer: User, agreement: Agreement) -> Job:
    return Job.objects.create(
        consumer=consumer,
        agreement=agreement,
        dataset=agreement.offer.dataset,
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


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_the_contract_for_every_caller(case: Any, world: World) -> None:
    generated = dict(case.path_parameters or {})
    real = {name: world.ids[name] for name in generated if name in world.ids}
    for path_parameters in [generated, {**generated, **real}] if real else [generated]:
        case.path_parameters = path_parameters
        for caller in CALLERS:
            case.call_and_validate(headers=world.headers[caller], checks=CHECKS)
