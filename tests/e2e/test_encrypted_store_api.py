"""The encrypted-store view over REST: what its provider sees, and what everyone else does."""

from __future__ import annotations

import pytest

from dataspace.accounts.models import Role
from dataspace.compute import stores
from tests.support.datasets import ready_dataset
from tests.support.users import client_for, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def test_the_store_view_shows_others_only_what_the_public_profile_does() -> None:
    """Others than the provider (and agreement holders: tests/privacy) see rounded rows, the
    category names of public columns only, and no bucket edges. (Non-personal: exact quantile
    edges may be used.)"""
    owner = make_user("owner", Role.PROVIDER)
    csv = b"age,region,ward\n" + b"".join(f"{20 + i % 50},{'nsew'[i % 4]},w{i % 3}\n".encode() for i in range(203))
    dataset = ready_dataset(owner, csv, public_value_columns=["region"], non_personal=True)
    assert stores.encrypted_store_build(dataset_id=dataset.id) is not None
    url = f"/api/datasets/{dataset.id}/encrypted-store/"

    mine = client_for(owner).get(url).json()
    assert mine["rows"] == 203
    assert mine["rows_exact"] is True
    assert {c["name"]: c.get("categories") for c in mine["columns"] if c["kind"] == "categorical"} == {
        "region": ["e", "n", "s", "w"],
        "ward": ["w0", "w1", "w2"],
    }

    theirs = client_for(make_user("lab", Role.CONSUMER)).get(url).json()
    assert theirs["rows"] == 200
    assert theirs["rows_exact"] is False
    columns = {c["name"]: c for c in theirs["columns"]}
    assert columns["region"]["categories"] == ["e", "n", "s", "w"]
    assert "categories" not in columns["ward"]
    assert columns["ward"]["cardinality"] == 3
    assert "w1" not in repr(theirs)
    # Bucket edges are facts about the data: shown to the provider and to agreement holders only.
    assert "bucket_edges" not in columns["age"]
    age_edges = {c["name"]: c for c in mine["columns"]}["age"]["bucket_edges"]
    assert age_edges[0] is None
    assert age_edges[-1] is None


def test_a_personal_dataset_shows_only_what_its_provider_declared() -> None:
    """Without privacy settings saying otherwise a dataset is personal: a numeric column gets the
    bounds and buckets its provider declared, and nothing from the data."""
    owner = make_user("owner", Role.PROVIDER)
    csv = b"age,bmi,region\n" + b"".join(f"{20 + i % 50},{18 + i % 20},{'nsew'[i % 4]}\n".encode() for i in range(200))
    encryption = {"bounds": {"age": [0, 120]}, "buckets": {"age": [18, 40, 65]}}
    dataset = ready_dataset(owner, csv, encryption=encryption)
    assert stores.encrypted_store_build(dataset_id=dataset.id) is not None
    columns = {
        c["name"]: c for c in client_for(owner).get(f"/api/datasets/{dataset.id}/encrypted-store/").json()["columns"]
    }
    assert columns["age"]["bounds"] == [0, 120]
    assert columns["age"]["bucket_edges"] == [18, 40, 65]
    assert columns["age"]["buckets"] == ["below", 0, 1, "above"]
    assert "mean.column" in columns["age"]["operations"]
    assert columns["bmi"]["bounds"] is None
    assert columns["bmi"]["bucket_edges"] == []
    assert columns["bmi"]["operations"] == []
