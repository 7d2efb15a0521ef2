"""The catalogue's reads come from memory while it is unchanged, and show every change at once.

The cache is keyed by the catalogue's state (dataspace/catalog/catalogue_cache.py): these tests
change each thing a catalogue answer shows, the way the platform changes it (services, the
outbox's ``update()`` of a registration write), and read again straight away.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from dataspace.accounts.authentication import TokenAuthentication
from dataspace.accounts.models import User
from dataspace.accounts.services import api_token_issue
from dataspace.catalog import services
from dataspace.catalog.apis import DatasetListCreateApi
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
    dataset = ready_dataset(provider, CSV, title="one")
    client = client_for(consumer)
    first = client.get("/api/datasets/")
    with CaptureQueriesContext(connection) as queries:
        second = client.get("/api/datasets/")
    assert second.content == first.content
    assert second["Content-Type"] == "application/json"
    # One statement: the token lookup with the state aggregate alongside, nothing else.
    assert len(queries) == 1, [q["sql"] for q in queries.captured_queries]
    detail = client.get(f"/api/datasets/{dataset.pk}/")
    with CaptureQueriesContext(connection) as queries:
        again = client.get(f"/api/datasets/{dataset.pk}/")
    assert again.content == detail.content
    assert len(queries) == 1, [q["sql"] for q in queries.captured_queries]


def test_a_session_read_sees_every_change_too(provider: User, consumer: User) -> None:
    # The portal reads the API with its session, not a token: the state is read on its own.
    client = Client()
    client.force_login(consumer)
    assert titles(client) == []
    first = ready_dataset(provider, CSV, title="first")
    assert titles(client) == ["first"]
    services.dataset_update(dataset=first, title="renamed")
    assert titles(client) == ["renamed"]
    assert client.get(f"/api/datasets/{first.pk}/").json()["title"] == "renamed"


@pytest.mark.parametrize("path", ["/api/datasets/", "/api/datasets/00000000-0000-0000-0000-000000000000/"])
def test_the_catalogues_token_check_refuses_as_every_other(provider: User, consumer: User, path: str) -> None:
    ready_dataset(provider, CSV, title="one")
    instance, token = api_token_issue(user=consumer)
    refused = {
        "unknown": f"Token {token[:-4]}zzzz",
        "garbage": "Token \xff",
        "no credentials": "Token",
    }

    def same_refusal(header: str, case: str) -> None:
        # /api/me/ checks tokens with the plain TokenAuthentication.
        catalogue, me = (APIClient().get(p, HTTP_AUTHORIZATION=header) for p in (path, "/api/me/"))
        assert catalogue.status_code == me.status_code == 401, case
        assert catalogue.json() == me.json(), case
        assert catalogue["WWW-Authenticate"] == me["WWW-Authenticate"], case

    for case, header in refused.items():
        same_refusal(header, case)
    AuthToken.objects.filter(pk=instance.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    response = APIClient().get(path, HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert not AuthToken.objects.filter(pk=instance.pk).exists()  # deleted when used, as knox does
    _, token = api_token_issue(user=consumer)
    User.objects.filter(pk=consumer.pk).update(is_active=False)
    same_refusal(f"Token {token}", "inactive")


def test_the_token_check_builds_the_user_as_the_orm_does(consumer: User) -> None:
    # The user comes from a plain cursor row: its fields must carry the ORM's types (SQLite gives
    # integers for booleans and naive datetimes unless converted).
    _, token = api_token_issue(user=consumer)
    for view in (None, DatasetListCreateApi()):  # a plain check, and one reading the state alongside
        request = Request(
            APIRequestFactory().get("/api/datasets/", HTTP_AUTHORIZATION=f"Token {token}"),
            parser_context={"view": view},
        )
        result = TokenAuthentication().authenticate(request)
        assert result is not None
        user, auth_token = result
        expected = User.objects.get(pk=consumer.pk)
        for field in User._meta.concrete_fields:
            assert getattr(user, field.attname) == getattr(expected, field.attname), field.name
            assert type(getattr(user, field.attname)) is type(getattr(expected, field.attname)), field.name
        assert user.is_consumer is True
        assert timezone.is_aware(user.date_joined)
        assert timezone.is_aware(auth_token.created)
        assert auth_token.user_id == consumer.pk


def test_filters_are_validated_on_every_read(provider: User, consumer: User) -> None:
    ready_dataset(provider, CSV, title="one")
    client = client_for(consumer)
    for _ in range(2):  # a refused query string is refused again, not remembered
        response = client.get("/api/datasets/", {"format": "xlsx"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_failed"
        assert client.get("/api/datasets/", {"search": "x" * 201}).status_code == 400
    for _ in range(2):
        assert [d["title"] for d in client.get("/api/datasets/", {"format": "csv"}).json()["results"]] == ["one"]
        assert client.get("/api/datasets/", {"format": "parquet"}).json()["results"] == []
        assert client.get("/api/datasets/", {"mine": "true"}).json()["results"] == []


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
