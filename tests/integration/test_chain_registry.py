"""The registry follows the catalogue (issue 12): a provider's metadata edit reaches the chain as
``updateFor``, a deletion as ``retireFor``, and the reconciliation compares the chain's metadata
hash with the catalogue's. Real anvil, a real Celery worker, the REST API."""

from __future__ import annotations

import pytest

from dataspace.accounts.models import User
from dataspace.accounts.services import wallet_create_custodial
from dataspace.audit.reconcile import reconcile
from dataspace.catalog.models import Dataset, Ingest
from dataspace.catalog.services import dataset_metadata_hash
from dataspace.chain import agents
from dataspace.chain.models import ChainTransaction
from tests.support.anvil import AnvilNode
from tests.support.users import client_for, upload
from tests.support.waiting import wait_for, wait_for_ingest
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
Status = ChainTransaction.Status


def registered_dataset(provider: User) -> tuple[Dataset, str]:
    """An uploaded dataset of a custodial provider, its registration confirmed on chain."""
    wallet = wallet_create_custodial(user=provider)
    accepted = upload(client_for(provider), b"age,region\n" + b"".join(b"%d,north\n" % i for i in range(50)))
    ingest = wait_for_ingest(accepted.json()["id"])
    assert ingest.status == Ingest.Status.SUCCEEDED
    dataset_id = ingest.dataset_id

    def registered() -> bool:
        tx = Dataset.objects.get(pk=dataset_id).chain_registration
        return tx is not None and tx.status == Status.CONFIRMED

    wait_for(registered, timeout=60)
    return Dataset.objects.get(pk=dataset_id), wallet.address


def chain_metadata_hash(dataset: Dataset, provider: str) -> str | None:
    entry = agents.DatasetRegistryAgent().get(dataset.id, provider=provider)
    return None if entry is None else entry.metadata_hash


def test_metadata_edits_and_deletion_reach_the_chain_and_reconcile_stays_clean(
    anvil: AnvilNode, provider: User, celery_worker_process: WorkerProcess
) -> None:
    dataset, address = registered_dataset(provider)
    api = client_for(provider)
    assert reconcile().ok
    # Two edits back to back: the second waits for the first's nonce, and the chain ends on it.
    url = f"/api/datasets/{dataset.id}/"
    assert api.patch(url, {"title": "Ages, revised"}, format="json").status_code == 200
    assert api.patch(url, {"description": "Ages by region", "keywords": ["age"]}, format="json").status_code == 200
    wanted = "0x" + dataset_metadata_hash(Dataset.objects.get(pk=dataset.pk)).hex()
    wait_for(lambda: chain_metadata_hash(dataset, address) == wanted, timeout=120, interval=0.5)
    # The outbox marks a write confirmed a moment after the node shows its effect.
    wait_for(lambda: not ChainTransaction.objects.filter(kind="dataset_update").exclude(status=Status.CONFIRMED))
    updates = ChainTransaction.objects.filter(kind="dataset_update", status=Status.CONFIRMED)
    assert updates.count() in {1, 2}  # the first edit may be overtaken before it is sent
    assert all(tx.function == "updateFor" for tx in updates)
    report = reconcile()
    assert report.ok, report.mismatches
    assert report.checked["registry_datasets"] == 1
    # An edit that leaves the metadata hash alone sends nothing. Only updates are counted: the
    # dataset's privacy terms are pinned on chain in their own time once its registration is confirmed.
    updates_before = ChainTransaction.objects.filter(kind="dataset_update").count()
    assert api.patch(url, {"public_value_columns": ["region"]}, format="json").status_code == 200
    assert ChainTransaction.objects.filter(kind="dataset_update").count() == updates_before

    assert api.delete(url).status_code == 204
    wait_for(
        lambda: not agents.DatasetRegistryAgent().get(dataset.id, provider=address).active,  # type: ignore[union-attr]
        timeout=120,
        interval=0.5,
    )
    wait_for(lambda: ChainTransaction.objects.get(kind="dataset_retire").status == Status.CONFIRMED)
    assert ChainTransaction.objects.get(kind="dataset_retire").function == "retireFor"
    report = reconcile()
    assert report.ok, report.mismatches
    assert report.checked["registry_deleted"] == 1


def test_a_metadata_hash_the_chain_does_not_hold_is_reported_stale(
    anvil: AnvilNode, provider: User, celery_worker_process: WorkerProcess
) -> None:
    dataset, address = registered_dataset(provider)
    on_chain = chain_metadata_hash(dataset, address)
    # Changed behind the services' back: nothing is sent, and the reconciliation notices.
    Dataset.objects.filter(pk=dataset.pk).update(title="Quietly renamed")
    report = reconcile()
    assert not report.ok
    catalogue = "0x" + dataset_metadata_hash(Dataset.objects.get(pk=dataset.pk)).hex()
    assert report.mismatches == [
        f"dataset {dataset.id}: metadata hash on chain is stale ({on_chain}, catalogue {catalogue})"
    ]


def test_a_dataset_deleted_behind_the_services_back_is_reported_active_on_chain(
    anvil: AnvilNode, provider: User, celery_worker_process: WorkerProcess
) -> None:
    from dataspace.catalog.models import Ingest as IngestModel

    dataset, _ = registered_dataset(provider)
    IngestModel.objects.filter(dataset=dataset).update(dataset=None)
    Dataset.objects.filter(pk=dataset.pk).delete()
    report = reconcile()
    assert report.mismatches == [f"dataset {dataset.id} was deleted from the catalogue but is active on chain"]
