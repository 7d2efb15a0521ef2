"""Building the encrypted store when an earlier attempt died half-way or a later one overtook it."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import pytest

from dataspace.accounts.models import Role
from dataspace.compute import stores
from dataspace.compute.he.layout import StoreLayout, product_key
from dataspace.compute.models import EncryptedStore, HEKey
from dataspace.vault import blobs
from tests.support.datasets import ready_dataset
from tests.support.users import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]
CSV = b"age,region\n" + b"".join(f"{20 + i % 50},{'nsew'[i % 4]}\n".encode() for i in range(200))


def _write(name: str) -> None:
    with blobs.open_for_write(name) as sink:
        sink.write(b"partial ciphertext")


def test_the_next_attempt_deletes_what_a_killed_build_left() -> None:
    dataset = ready_dataset(make_user("owner", Role.PROVIDER), CSV)
    dead = f"he/{dataset.id}/killed"
    EncryptedStore.objects.create(dataset=dataset, status=EncryptedStore.Status.BUILDING, attempts=1, blob_prefix=dead)
    left = [f"{dead}/num.age.ct", f"{dead}/cat.region.0.ct", f"{dead}/deeper/public-products.ctx"]
    for name in left:
        _write(name)

    store = stores.encrypted_store_build(dataset_id=dataset.id)

    assert store is not None
    assert store.status == EncryptedStore.Status.READY
    assert store.attempts == 2
    assert store.blob_prefix != dead
    assert not any(blobs.exists(name) for name in left)
    layout = StoreLayout.from_json(store.layout)
    assert layout.packed
    assert layout.packs
    assert store.stored_bytes == sum(blobs.size(name) for name in layout.blob_names())


def test_a_build_overtaken_by_a_later_attempt_keeps_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = ready_dataset(make_user("owner", Role.PROVIDER), CSV)
    real_counts = stores._cohort_counts
    first: dict[str, str] = {}

    def overtaken(layout: Any, batches: Any) -> dict[str, Any]:
        # While this build finishes, another worker decides it died and claims the store.
        first["prefix"] = EncryptedStore.objects.get(dataset=dataset).blob_prefix
        assert stores._claim(dataset.id) is not None
        return real_counts(layout, batches)

    monkeypatch.setattr(stores, "_cohort_counts", overtaken)
    assert stores.encrypted_store_build(dataset_id=dataset.id) is None

    store = EncryptedStore.objects.get(dataset=dataset)
    assert store.status == EncryptedStore.Status.BUILDING
    assert store.attempts == 2
    assert store.blob_prefix != first["prefix"]
    assert not store.layout
    assert not HEKey.objects.exists()
    assert blobs.delete_under(first["prefix"]) == 0  # the overtaken build removed its own blobs

    monkeypatch.setattr(stores, "_cohort_counts", real_counts)
    rebuilt = stores.encrypted_store_build(dataset_id=dataset.id)
    assert rebuilt is not None
    assert rebuilt.status == EncryptedStore.Status.READY
    assert rebuilt.attempts == 3


def test_stores_built_before_open_ends_get_them_from_the_migration(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.apps import apps

    # Open ends are for exact quantile edges, which only a non-personal dataset gets (ISSUE-11: the
    # lead wires the privacy settings that say so).
    options = stores._options
    monkeypatch.setattr(stores, "_options", lambda dataset: dataclasses.replace(options(dataset), non_personal=True))
    migration = importlib.import_module("dataspace.compute.migrations.0004_layout_open_ends")
    owner = make_user("owner", Role.PROVIDER)
    csv = b"age,bmi\n" + b"".join(f"{20 + i % 50},{18 + (i * 7) % 20}.5\n".encode() for i in range(200))
    dataset = ready_dataset(owner, csv, encryption={"buckets": {"age": [20, 40, 70]}})
    store = stores.encrypted_store_build(dataset_id=dataset.id)
    assert store is not None
    for column in store.layout["columns"]:
        column.pop("open_ends")  # as a layout written before the field existed
    store.save(update_fields=["layout"])

    migration.open_quantile_ends(apps, None)

    store.refresh_from_db()
    layout = StoreLayout.from_json(store.layout)
    assert not layout.column("age").open_ends  # the provider's own edges
    assert layout.column("bmi").open_ends


def test_declared_bounds_reach_the_store_and_every_row_has_a_cell() -> None:
    owner = make_user("owner", Role.PROVIDER)
    ages = [5, 17, 18, 30, 64, 65, 90, 130, None, None] * 20
    csv = b"age,region\n" + b"".join(f"{'' if a is None else a},{'nsew'[i % 4]}\n".encode() for i, a in enumerate(ages))
    encryption = {"bounds": {"age": [0, 100]}, "buckets": {"age": [18, 40, 65]}}
    dataset = ready_dataset(owner, csv, encryption=encryption)
    store = stores.encrypted_store_build(dataset_id=dataset.id)
    assert store is not None
    age = StoreLayout.from_json(store.layout).column("age")
    assert (age.bounds, age.bounds_source, age.scale) == ((0, 100), "declared", 128)
    # The provider's own view of the exact counts: every cell, every row once.
    assert store.cohort_counts["buckets"]["age"] == [40, 40]  # [18, 40): 18, 30; [40, 65]: 64, 65
    assert store.cohort_counts["cells"]["age"] == {"below": 40, "above": 40, "null": 40}
    counted = sum(store.cohort_counts["buckets"]["age"]) + sum(store.cohort_counts["cells"]["age"].values())
    assert counted == len(ages)


def test_declared_group_by_pairs_reach_the_store_and_others_are_left_to_the_streamed_path() -> None:
    owner = make_user("owner", Role.PROVIDER)
    rows = [(20 + i % 60, 10 * (i % 7), "nsew"[i % 4]) for i in range(200)]
    csv = b"age,cost,region\n" + b"".join(f"{a},{c},{r}\n".encode() for a, c, r in rows)
    encryption = {
        "bounds": {"age": [0, 100], "cost": [0, 100]},
        "sums_only": ["cost"],
        # cost is sums-only, "nope" is no column, age is no categorical: none can be prepared.
        "group_by": {"region": ["age", "cost", "nope"], "age": ["cost"]},
    }
    dataset = ready_dataset(owner, csv, encryption=encryption)
    store = stores.encrypted_store_build(dataset_id=dataset.id)
    assert store is not None
    layout = StoreLayout.from_json(store.layout)
    categories = layout.column("region").categories
    assert sorted(layout.products) == sorted(product_key("num:age", f"cat:region:{i}") for i in range(len(categories)))
