"""Deleting a dataset shreds its encrypted store too, and refuses while offers exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from dataspace.accounts.models import Role
from dataspace.catalog.models import Dataset
from dataspace.compute.he.layout import StoreLayout
from dataspace.compute.models import EncryptedStore, HEKey
from dataspace.compute.stores import encrypted_store_build
from dataspace.policies import odrl
from dataspace.policies.models import Offer
from dataspace.vault import blobs
from dataspace.vault.models import DataKey
from tests.support.datasets import ready_dataset
from tests.support.users import client_for, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]
CSV = b"age,region\n" + b"".join(f"{20 + i % 50},{'nsew'[i % 4]}\n".encode() for i in range(200))


def test_delete_shreds_the_encrypted_store() -> None:
    owner = make_user("owner", Role.PROVIDER)
    dataset = ready_dataset(owner, CSV)
    store = encrypted_store_build(dataset_id=dataset.id)
    assert store is not None
    assert store.status == EncryptedStore.Status.READY
    layout = StoreLayout.from_json(store.layout)
    names = layout.blob_names()
    names += [name for key in HEKey.objects.all() for name in (key.public_blob, key.secret_blob)]
    key_ids = list(HEKey.objects.values_list("data_key_id", flat=True))
    assert all(blobs.exists(name) for name in names)

    assert client_for(owner).delete(f"/api/datasets/{dataset.id}/").status_code == 204
    assert not any(blobs.exists(name) for name in names)
    assert blobs.delete_under(store.blob_prefix) == 0  # nothing else was left under the store's prefix
    assert not EncryptedStore.objects.exists()
    assert not DataKey.objects.filter(pk__in=key_ids).exists()


def test_delete_leaves_no_empty_folder_behind() -> None:
    owner = make_user("owner", Role.PROVIDER)
    dataset = ready_dataset(owner, CSV)
    assert encrypted_store_build(dataset_id=dataset.id) is not None
    store_folder = Path(settings.BLOB_ROOT) / "he" / str(dataset.id)
    assert store_folder.is_dir()

    assert client_for(owner).delete(f"/api/datasets/{dataset.id}/").status_code == 204
    assert not store_folder.exists()
    leftovers = [p for p in Path(settings.BLOB_ROOT).rglob("*") if str(dataset.id) in str(p)]
    assert leftovers == []


def test_a_dataset_with_offers_is_not_deleted() -> None:
    owner = make_user("owner", Role.PROVIDER)
    dataset = ready_dataset(owner, CSV)
    terms = odrl.Terms(["research"], ["mean"], 5, 1, 86400, 0.0, 10)
    Offer.objects.create(
        dataset=dataset,
        provider=owner,
        purposes=["research"],
        operations=["mean"],
        max_calls=5,
        price_per_call=1,
        duration_seconds=86400,
        policy=odrl.policy_document(offer_id=dataset.id, dataset_id=dataset.id, provider="0x0", terms=terms),
        policy_hash="0x",
    )
    response = client_for(owner).delete(f"/api/datasets/{dataset.id}/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert Dataset.objects.filter(pk=dataset.id).exists()
