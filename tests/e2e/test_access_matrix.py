"""Each role x each endpoint x own or another's object, asserted.

Another user's private object answers 404 (ids do not leak); a missing role answers 403; no
credentials answer 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from dataspace.accounts.models import Role, User
from tests.conftest import client_for, make_user
from tests.support.datasets import ready_dataset

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


# (method, path, body) -> expected status per caller
MATRIX: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("get", "/api/datasets/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("get", "/api/datasets/{dataset}/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("patch", "/api/datasets/{dataset}/", {"title": "New"}, {"anonymous": 401, "owner": 200, "other_provider": 404, "consumer": 403, "auditor": 403}),
    ("delete", "/api/datasets/{dataset}/", None, {"anonymous": 401, "owner": 204, "other_provider": 404, "consumer": 403, "auditor": 403}),
    ("get", "/api/ingests/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 403, "auditor": 403}),
    ("get", "/api/ingests/{ingest}/", None, {"anonymous": 401, "owner": 200, "other_provider": 404, "consumer": 403, "auditor": 403}),
    ("get", "/api/me/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("get", "/api/auth/tokens/", None, {"anonymous": 401, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("get", "/catalog.jsonld", None, {"anonymous": 200, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
    ("get", "/catalog/datasets/{dataset}.jsonld", None, {"anonymous": 200, "owner": 200, "other_provider": 200, "consumer": 200, "auditor": 200}),
]  # fmt: skip

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
    response = getattr(client, method)(path.format(**world.ids), body, format="json")
    assert response.status_code == expected, response.content
    if expected >= 400:
        code = response.json()["error"]["code"]
        assert code == {401: "not_authenticated", 403: "role_required", 404: "not_found"}[expected]


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
