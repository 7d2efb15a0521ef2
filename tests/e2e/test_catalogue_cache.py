"""The catalogue's reads come from memory while it is unchanged, and show every change at once.

The cache is keyed by the catalogue's state (dataspace/catalog/catalogue_cache.py): these tests
change each thing a catalogue answer shows, the way the platform changes it (services, the
outbox's ``update()`` of a registration write), and read again straight away.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dataspace.accounts.models import User
from dataspace.catalog import services
from dataspace.catalog.models import Dataset
from dataspace.chain.models import ChainTransaction
from tests.support.datasets import ready_dataset
from tests.support.users import client_for

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

CSV = b"a,b\n1,2\n3,4\n"


def titles(client: object) -> list[str]:
    response = client.get("/api/datasets/")  # type: ignore[attr-defined]
    assert response.status_code == 200, response.content
    return [d["title"] for d in response.json()["results"]]


def test_a_repeated_read_does_not_query_the_datasets(provider: User, consumer: User) -> None:
    ready_dataset(provider, CSV, title="one")
    client = client_for(consumer)
    first = client.get("/api/datasets/")
    with CaptureQueriesContext(connection) as queries:
        second = client.get("/api/datasets/")
    assert second.content == first.content
    assert second["Content-Type"] == "application/json"
    # The token lookup and the state aggregate, nothing else.
    assert len(queries) == 2, [q["sql"] for q in queries.captured_queries]


def test_new_changed_and_deleted_datasets_show_at_once(provider: User, consumer: User) -> None:
    client = client_for(consumer)
    assert titles(client) == []
    first = ready_dataset(provider, CSV, title="first")
    assert titles(client) == ["first"]
    ready_dataset(provider, CSV, title="second")
    assert titles(client) == ["second", "first"]
    services.dataset_update(dataset=first, title="renamed")
    assert titles(client) == ["second", "renamed"]
    assert client.get(f"/api/datasets/{first.pk}/").json()["title"] == "renamed"
    services.dataset_delete(dataset=Dataset.objects.get(pk=first.pk))
    assert titles(client) == ["second"]
    assert client.get(f"/api/datasets/{first.pk}/").status_code == 404


def test_a_registration_moved_by_the_outbox_shows_at_once(provider: User, consumer: User) -> None:
    dataset = ready_dataset(provider, CSV, title="registered")
    write = ChainTransaction.objects.create(
        chain_id=31337, idempotency_key=f"test-register:{dataset.pk}", kind="register", contract="c", function="f"
    )
    Dataset.objects.filter(pk=dataset.pk).update(chain_registration=write)
    client = client_for(consumer)

    def status() -> str:
        return client.get(f"/api/datasets/{dataset.pk}/").json()["chain"]["status"]

    assert status() == "pending"
    for moved in ("signed", "sent", "confirmed"):
        # The outbox moves a write with update(), which leaves updated_at alone.
        ChainTransaction.objects.filter(pk=write.pk).update(status=moved)
        assert status() == moved
        assert client.get("/api/datasets/").json()["results"][0]["chain"]["status"] == moved


def test_a_providers_own_view_is_not_served_to_others(provider: User, consumer: User) -> None:
    dataset = ready_dataset(provider, CSV, title="mine")
    own = client_for(provider).get(f"/api/datasets/{dataset.pk}/").json()
    other = client_for(consumer).get(f"/api/datasets/{dataset.pk}/").json()
    assert "schema" in own
    assert "row_count" in own
    assert "schema" not in other
    assert "row_count" not in other
    assert [d["title"] for d in client_for(provider).get("/api/datasets/?mine=true").json()["results"]] == ["mine"]
    assert client_for(consumer).get("/api/datasets/?mine=true").json()["results"] == []


def test_pagination_links_follow_the_host_asked(provider: User, consumer: User, settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["one.example", "two.example"]
    for index in range(3):
        ready_dataset(provider, CSV, title=f"d{index}")
    client = client_for(consumer)
    one = client.get("/api/datasets/?limit=1", HTTP_HOST="one.example").json()
    two = client.get("/api/datasets/?limit=1", HTTP_HOST="two.example").json()
    assert one["next"].startswith("http://one.example/")
    assert two["next"].startswith("http://two.example/")
