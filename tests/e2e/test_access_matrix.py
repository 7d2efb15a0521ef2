"""Each role x each endpoint x own or another's object, asserted.

Another user's private object answers 404 (ids do not leak); a missing role answers 403; no
credentials answer 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from dataspace.accounts.models import Role, User
from tests.support.datasets import ready_dataset
from tests.support.users import client_for, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


@dataclass
class World:
    users: dict[str, User | None]
    ids: dict[str, str]


@pytest.fixture
def world() -> World:
    owner = make_user("owner", Role.PROVIDER)
    other = make_user("other", Role.PROVIDER)
    dataset = ready_dataset(owner, b"a,b\n1,x\n2,y\n3,x\n4,y\n", title="Owned")
    ingest = dataset.ingest  # type: ignore[attr-defined]
    return World(
        users={
            "anonymous": None,
            "owner": owner,
            "other_provider": other,
            "consumer": make_user("consumer", Role.CONSUMER),
            "auditor": make_user("auditor", Role.AUDITOR),
        },
        ids={"dataset": str(dataset.id), "ingest": str(ingest.id)},
    )


# (method, path, body) -> expected status per caller. A table is read row by row: one request a line.
# fmt: off
MATRIX: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("get", "/api/datasets/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("get", "/api/datasets/{dataset}/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("patch", "/api/datasets/{dataset}/", {"title": "New"}, {"anonymous": 401, "owner": 200, "other_provider": 404, "consumer": 403, "auditor": 403}),
    ("delete", "/api/datasets/{dataset}/", None, {"anonymous": 401, "owner": 204, "other_provider": 404, "consumer": 403, "auditor": 403}),
    ("get", "/api/ingests/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 403, "auditor": 403}),
    ("get", "/api/ingests/{ingest}/", None, {"anonymous": 401, "owner": 200, "other_provider": 404, "consumer": 403, "auditor": 403}),
    ("get", "/api/me/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("get", "/api/auth/tokens/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("get", "/api/datasets/{dataset}/encrypted-store/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("get", "/api/operations/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("get", "/api/offers/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("post", "/api/offers/", {"dataset": "{dataset}", "purposes": ["research"], "operations": ["mean"], "max_calls": 5, "price_per_call": 1, "duration_days": 1}, {"anonymous": 401, "owner": 409, "other_provider": 404, "consumer": 403, "auditor": 403}),
    ("get", "/api/agreements/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("post", "/api/agreements/", {"offer": "00000000-0000-4000-8000-000000000000", "calls": 1}, {"anonymous": 401, "owner": 403, "other_provider": 403, "consumer": 404, "auditor": 403}),
    ("get", "/api/agreements/00000000-0000-4000-8000-000000000000/", None, {"anonymous": 401, "owner": 404, "other_provider": 404, "consumer": 404, "auditor": 404}),
    ("get", "/api/jobs/", None, {"anonymous": 401, "owner": 403, "other_provider": 403, "consumer": 200, "auditor": 403}),
    ("post", "/api/jobs/", {"agreement": "00000000-0000-4000-8000-000000000000", "operation": "mean", "purpose": "research"}, {"anonymous": 401, "owner": 403, "other_provider": 403, "consumer": 404, "auditor": 403}),
    ("get", "/api/jobs/00000000-0000-4000-8000-000000000000/", None, {"anonymous": 401, "owner": 403, "other_provider": 403, "consumer": 404, "auditor": 403}),
    ("get", "/api/earnings/", None, {"anonymous": 401, "owner": 409, "other_provider": 409, "consumer": 403, "auditor": 403}),
    ("get", "/api/audit/reconcile/", None, {"anonymous": 401, "owner": 403, "other_provider": 403, "consumer": 403, "auditor": 404}),
    ("post", "/api/audit/reconcile/", None, {"anonymous": 401, "owner": 403, "other_provider": 403, "consumer": 403, "auditor": 202}),
    ("post", "/api/audit/receipts/verify/", {"receipt": {"job_id": "0x12"}}, {"anonymous": 401, "owner": 403, "other_provider": 403, "consumer": 403}),  # auditor: tests/integration/test_receipt_audit.py
    ("get", "/catalog.jsonld", None, {"anonymous": 200, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("get", "/catalog/datasets/{dataset}.jsonld", None, {"anonymous": 200, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
]
# fmt: on

CASES = [
    (method, path, body, caller, expected)
    for method, path, body, expectations in MATRIX
    for caller, expected in expectations.items()
]


@pytest.mark.parametrize(
    ("method", "path", "body", "caller", "expected"), CASES, ids=[f"{c[0]} {c[1]} as {c[3]}" for c in CASES]
)
def test_access(world: World, method: str, path: str, body: dict[str, Any] | None, caller: str, expected: int) -> None:
    client = client_for(world.users[caller])
    if body is not None:
        body = {k: v.format(**world.ids) if isinstance(v, str) else v for k, v in body.items()}
    response = getattr(client, method)(path.format(**world.ids), body, format="json")
    assert response.status_code == expected, response.content
    if expected >= 400:
        code = response.json()["error"]["code"]
        expected_codes = {401: "not_authenticated", 403: "role_required", 404: "not_found"}
        # 409: the caller may act, but not yet (no dataset on chain in this world, no wallet)
        assert code == expected_codes.get(expected, code)
        assert code in {*expected_codes.values(), "dataset_not_on_chain", "wallet_required"}


def test_providers_list_only_their_own_ingests(world: World) -> None:
    assert client_for(world.users["other_provider"]).get("/api/ingests/").json()["results"] == []
    assert len(client_for(world.users["owner"]).get("/api/ingests/").json()["results"]) == 1


def test_exact_facts_are_for_the_owner_only(world: World) -> None:
    own = client_for(world.users["owner"]).get(f"/api/datasets/{world.ids['dataset']}/").json()
    seen = client_for(world.users["consumer"]).get(f"/api/datasets/{world.ids['dataset']}/").json()
    assert own["row_count"] == 4
    assert "row_count" not in seen
    assert "schema" not in seen
    assert seen["profile"]["rows_approx"] == 10


def test_unknown_and_malformed_ids_are_404(world: World) -> None:
    client = client_for(world.users["owner"])
    assert client.get("/api/datasets/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert client.get("/api/datasets/not-a-uuid/").status_code == 404
