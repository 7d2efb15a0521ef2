"""A dataset deleted while another process adds a row that refers to it: the worker pinning its
privacy terms makes its budget row on first use, and a provider may delete the dataset at that
moment. The deletion wins and leaves nothing behind; the worker finds the dataset gone. Run on
the test database's real server (PostgreSQL in CI), with a second connection from a thread."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from django.db.models.signals import pre_delete

from dataspace.accounts.models import User
from dataspace.catalog import services
from dataspace.catalog.models import Dataset
from dataspace.chain.models import ChainTransaction
from dataspace.errors import NotFound
from dataspace.privacy import onchain
from dataspace.privacy.models import DatasetBudget
from dataspace.privacy.services import budget_get
from tests.support.datasets import ready_dataset

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_a_budget_row_made_during_a_deletion_waits_for_it_and_finds_the_dataset_gone(provider: User) -> None:
    dataset = ready_dataset(provider, b"age\n" + b"".join(b"%d\n" % i for i in range(20)))
    assert not DatasetBudget.objects.filter(pk=dataset.pk).exists()
    outcome: dict[str, Any] = {}

    def make_budget() -> None:
        try:
            budget_get(dataset=Dataset.objects.get(pk=dataset.pk))
            outcome["made"] = True
        except Exception as exc:  # the test reads what the worker would see
            outcome["error"] = exc
        finally:
            connection.close()

    worker = threading.Thread(target=make_budget)

    def between_gathering_and_deleting(sender: Any, instance: Dataset, **_: Any) -> None:
        # Django has gathered what refers to the dataset and is about to delete it: the moment a
        # row added by another transaction would escape the cascade.
        worker.start()
        worker.join(timeout=2)

    pre_delete.connect(between_gathering_and_deleting, sender=Dataset, weak=False)
    try:
        services.dataset_delete(dataset=dataset)
    finally:
        pre_delete.disconnect(between_gathering_and_deleting, sender=Dataset)
    worker.join(timeout=60)
    assert not worker.is_alive()

    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert not DatasetBudget.objects.filter(pk=dataset.pk).exists()
    assert "made" not in outcome
    assert isinstance(outcome.get("error"), NotFound), outcome
    # The pinning task's step ends there rather than failing or retrying.
    assert onchain.terms_progress(dataset_id=dataset.pk) is True


def test_the_terms_sweeper_passes_over_a_dataset_deleted_after_it_was_listed(
    provider: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, gone = (ready_dataset(provider, b"age\n1\n2\n", title=title) for title in ("kept", "gone"))
    for dataset in (kept, gone):
        dataset.chain_registration = ChainTransaction.objects.create(
            chain_id=31337,
            idempotency_key=f"register-{dataset.id}",
            kind="dataset_register",
            contract="DatasetRegistry",
            function="registerFor",
            sender="0x" + "11" * 20,
            status=ChainTransaction.Status.CONFIRMED,
        )
        dataset.save(update_fields=["chain_registration"])
    listed_budget_get = onchain.budget_get

    def deleted_by_its_provider_first(*, dataset: Dataset, **kwargs: Any) -> DatasetBudget:
        if dataset.pk == gone.pk:
            Dataset.objects.filter(pk=gone.pk).delete()  # the provider's deletion, committed
        return listed_budget_get(dataset=dataset, **kwargs)

    monkeypatch.setattr(onchain, "budget_get", deleted_by_its_provider_first)
    # Before: NotFound("dataset") from the deleted one ended the sweep for both.
    assert onchain.datasets_out_of_sync() == [kept.id]
    assert not Dataset.objects.filter(pk=gone.pk).exists()
