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
