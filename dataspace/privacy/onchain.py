"""Pinning a dataset's privacy terms on chain: its limit (nano-ρ) or its non-personal flag.

The provider's custodial wallet sends the write (``UsageAgreements`` lets only the dataset's
provider set them), once the dataset's registration is confirmed and before its first offer can
be published. The chain, not this database, is what an auditor reads, so what the database
mirrors is read back from the contract once a write is confirmed.
"""

from __future__ import annotations

import logging
import uuid

from django.db import transaction

from dataspace import tasking
from dataspace.accounts.selectors import wallet_custodial_address
from dataspace.catalog import selectors as catalog_selectors
from dataspace.catalog.models import Dataset
from dataspace.chain import agents, outbox
from dataspace.chain.encoding import rho_nano
from dataspace.chain.models import ChainTransaction
from dataspace.errors import NotFound
from dataspace.privacy.models import DatasetBudget
from dataspace.privacy.services import budget_get

logger = logging.getLogger(__name__)
FOLLOW_TASK = "dataspace.privacy.tasks.follow_dataset_terms"


def terms_on_chain(*, dataset: Dataset) -> bool:
    """Whether the chain holds the dataset's privacy terms as the catalogue states them."""
    budget = budget_get(dataset=dataset)
    if dataset.non_personal:
        return budget.chain_non_personal
    return rho_nano(budget.chain_rho_limit) >= rho_nano(budget.rho_limit) > 0


def terms_sync_request(*, dataset_id: uuid.UUID) -> None:
    tasking.enqueue(FOLLOW_TASK, str(dataset_id))


def _mirror(dataset_id: uuid.UUID, provider: str) -> None:
    on_chain = agents.UsageAgreementsAgent().dataset_privacy(dataset_id, provider=provider)
    DatasetBudget.objects.filter(pk=dataset_id).update(
        chain_rho_limit=on_chain.limit / 1e9, chain_non_personal=on_chain.non_personal, pending_tx=None
    )


def _abandon(dataset_id: uuid.UUID, tx: ChainTransaction) -> None:
    logger.warning("privacy terms of %s refused on chain: %s", dataset_id, tx.revert_reason)
    DatasetBudget.objects.filter(pk=dataset_id).update(pending_tx=None)


def terms_progress(*, dataset_id: uuid.UUID) -> bool:
    """Moves the chain one step towards the dataset's privacy terms; True once it holds them."""
    try:
        return _terms_progress(catalog_selectors.dataset_get(dataset_id=dataset_id))
    except NotFound:
        logger.info("privacy terms of %s not pinned: the dataset was deleted", dataset_id)
        return True  # nothing left to pin; its retirement is the registry's flow


def _terms_progress(dataset: Dataset) -> bool:
    dataset_id = dataset.id
    registration = dataset.chain_registration
    if registration is None or registration.status != ChainTransaction.Status.CONFIRMED:
        return False  # the registry must know the dataset (and its provider) first
    budget = budget_get(dataset=dataset)
    provider = wallet_custodial_address(user=dataset.provider, action="pin the dataset's privacy terms")
    if budget.pending_tx_id is not None:
        return outbox.write_follow(
            tx_id=budget.pending_tx_id,
            on_confirmed=lambda tx: _mirror(dataset_id, provider),
            on_failed=lambda tx: _abandon(dataset_id, tx),
        ) and terms_on_chain(dataset=dataset)
    if terms_on_chain(dataset=dataset):
        return True
    agent = agents.UsageAgreementsAgent()
    with transaction.atomic():
        if dataset.non_personal:
            tx = agent.declare_non_personal(
                key=f"dataset-non-personal:{dataset.id}", provider=provider, dataset_id=dataset.id
            )
        else:
            limit = rho_nano(budget.rho_limit)
            tx = agent.set_dataset_privacy_limit(
                key=f"dataset-privacy-limit:{dataset.id}:{limit}", provider=provider, dataset_id=dataset.id, limit=limit
            )
        DatasetBudget.objects.filter(pk=budget.pk, pending_tx__isnull=True).update(pending_tx=tx)
    return False


def datasets_out_of_sync() -> list[uuid.UUID]:
    """Registered datasets whose privacy terms the chain does not hold yet (for the sweeper)."""
    confirmed = Dataset.objects.filter(chain_registration__status=ChainTransaction.Status.CONFIRMED)
    return [dataset.id for dataset in confirmed.select_related("provider")[:500] if not _held_or_gone(dataset)]


def _held_or_gone(dataset: Dataset) -> bool:
    # A provider may delete a listed dataset before its turn: it needs no terms, and one deletion
    # must not end the sweep for every other dataset.
    try:
        return terms_on_chain(dataset=dataset)
    except NotFound:
        return True
