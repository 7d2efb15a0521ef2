"""Browsing the catalogue: the documented filters of GET /api/datasets/."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dataspace.accounts.models import User
from tests.support.datasets import ready_dataset
from tests.support.files import parquet_bytes
from tests.support.users import client_for

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


@pytest.fixture
def catalogue(provider: User) -> None:
    ready_dataset(provider, b"a,b\n1,2\n3,4\n", title="As CSV", name="t.csv")
    ready_dataset(provider, parquet_bytes(pa.table({"a": [1, 2, 3]})), title="As Parquet", name="t.parquet")


@pytest.mark.parametrize(("file_format", "title"), [("csv", "As CSV"), ("parquet", "As Parquet")])
def test_format_filters_the_catalogue(catalogue: None, consumer: User, file_format: str, title: str) -> None:
    # DRF once read ?format= as its renderer override: every value answered 404.
    response = client_for(consumer).get("/api/datasets/", {"format": file_format})
    assert response.status_code == 200, response.content
    assert [d["title"] for d in response.json()["results"]] == [title]


def test_an_unknown_format_is_a_validation_error(catalogue: None, consumer: User) -> None:
    response = client_for(consumer).get("/api/datasets/", {"format": "json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_failed"
    assert "format" in response.json()["error"]["details"]


def test_without_filters_the_catalogue_lists_everything(catalogue: None, consumer: User) -> None:
    assert client_for(consumer).get("/api/datasets/").json()["count"] == 2
