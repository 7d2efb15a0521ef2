"""Keeping the registry's entry of each dataset in step with the catalogue (issue 12).

A provider's metadata edit changes the dataset's metadata hash: ``updateFor`` carries it to the
chain. Deleting a dataset retires it there: ``retireFor``. Both are relayed by the operator with
the provider's DatasetChange signature, which the chain signer makes for the custodial wallet.

Invariants kept here:
- one write at a time per dataset: a step first follows any change write of the dataset still on
  its way (it holds the next nonce); then it reads the chain (the entry and the dataset's nonce)
  and either finds it in step, or follows the one write for that nonce and hash (its idempotency
  key), or queues it. A redelivered step never makes a second write, and a change made while a
  write is on its way is sent after it, with the next nonce;
- nothing is lost: a step whose message is lost is found by the sweeper, from the database alone
  (the indexed registry events against the catalogue, and the platform's confirmed registrations
  of datasets the catalogue no longer has);
- a write the chain refuses is logged and left FAILED; the reconciliation reports the dataset as
  stale (or as deleted but active) for a person to look at.
"""

from __future__ import annotations

import logging
import uuid

from dataspace import tasking
from dataspace.accounts import selectors as accounts_selectors
from dataspace.catalog.models import Dataset
from dataspace.chain import agents, indexer, outbox
from dataspace.chain.encoding import dataset_uuid
from dataspace.chain.models import ChainTransaction

logger = logging.getLogger(__name__)
Status = ChainTransaction.Status
FOLLOW_METADATA_TASK = "dataspace.catalog.tasks.follow_dataset_metadata"
RETIRE_TASK = "dataspace.catalog.tasks.retire_dataset"


def metadata_hash_of(dataset: Dataset) -> bytes:
    from dataspace.catalog.services import dataset_metadata_hash

    return dataset_metadata_hash(dataset)


def _follow(tx: ChainTransaction) -> bool:
    """Moves a change write on; True once nothing more will come of it (confirmed: the next step
    sees the chain in step; failed: logged, left to the reconciliation)."""
    tx = outbox.write_progress(tx_id=tx.pk)
    if tx.status == Status.FAILED:
        logger.warning("registry change %s refused on chain: %s", tx.idempotency_key, tx.revert_reason)
        return True
    return False


def _changes_of(dataset_id: uuid.UUID) -> tuple[str, ...]:
    return (f"dataset-update:{dataset_id}:", f"dataset-retire:{dataset_id}:")


def metadata_progress(*, dataset_id: uuid.UUID) -> bool:
    """Moves the chain one step towards the dataset's catalogue metadata hash; True once the
    registry holds it (or there is nothing to carry: not registered yet, since a registration
    takes the metadata of its time; deleted; retired)."""
    dataset = Dataset.objects.select_related("chain_registration").filter(pk=dataset_id).first()
    if dataset is None or dataset.chain_registration is None:
        return True
    if dataset.chain_registration.status != Status.CONFIRMED:
        return dataset.chain_registration.status == Status.FAILED  # wait for the registration
    earlier = outbox.write_unfinished(key_prefixes=_changes_of(dataset.id))
    if earlier is not None:  # it holds the dataset's next nonce: let it land first
        _follow(earlier)
        return False
    provider = accounts_selectors.wallet_address(user_id=dataset.provider_id)
    agent = agents.DatasetRegistryAgent()
    entry = agent.get(dataset.id, provider=provider)
    wanted = metadata_hash_of(dataset)
    if entry is None or not entry.active or entry.metadata_hash == "0x" + wanted.hex():
        return True
    nonce = agent.nonce(dataset.id, provider=provider)
    key = agent.update_key(dataset_id=dataset.id, nonce=nonce, metadata_hash=wanted)
    tx = outbox.write_find(idempotency_key=key) or agent.update(
        dataset_id=dataset.id,
        provider=provider,
        metadata_hash=wanted,
        content_hash=bytes.fromhex(dataset.content_sha256),
        nonce=nonce,
    )
    return _follow(tx)


def retire_progress(*, dataset_id: uuid.UUID, provider: str) -> bool:
    """Moves the chain one step towards the deleted dataset's retirement; True once the registry
    has it retired (or never had it and never will)."""
    earlier = outbox.write_unfinished(key_prefixes=_changes_of(dataset_id))
    if earlier is not None:  # an update still on its way holds the next nonce
        _follow(earlier)
        return False
    agent = agents.DatasetRegistryAgent()
    entry = agent.get(dataset_id, provider=provider)
    if entry is None:
        # Its registration may still be on its way (the outbox sends it regardless): wait for it.
        return not _registration_unfinished(dataset_id)
    if not entry.active:
        return True
    nonce = agent.nonce(dataset_id, provider=provider)
    key = agent.retire_key(dataset_id=dataset_id, nonce=nonce)
    tx = outbox.write_find(idempotency_key=key) or agent.retire(dataset_id=dataset_id, provider=provider, nonce=nonce)
    return _follow(tx)


def _registration_unfinished(dataset_id: uuid.UUID) -> bool:
    tx = outbox.write_find(idempotency_key=f"dataset-register:{dataset_id}")
    return tx is not None and tx.status not in {Status.CONFIRMED, Status.FAILED}


def retire_request_on_commit(*, dataset_id: uuid.UUID, provider: str) -> None:
    tasking.enqueue_on_commit(RETIRE_TASK, str(dataset_id), provider)


def metadata_sync_request_on_commit(*, dataset_id: uuid.UUID) -> None:
    tasking.enqueue_on_commit(FOLLOW_METADATA_TASK, str(dataset_id))


def out_of_step() -> tuple[list[uuid.UUID], list[tuple[uuid.UUID, str]]]:
    """For the sweeper, from the database alone: datasets whose indexed registry entry holds
    another metadata hash than the catalogue's, and (id, provider) of datasets the platform
    registered, the catalogue no longer has, and the indexed events do not show retired."""
    indexed = indexer.indexed_datasets()
    stale = []
    registered = Dataset.objects.filter(chain_registration__status=Status.CONFIRMED)
    for dataset in registered.select_related("chain_registration")[:500]:
        entry = indexed.get(str(dataset.chain_registration.args[0]).lower())  # type: ignore[union-attr]
        if entry is not None and not entry.retired and entry.metadata_hash != "0x" + metadata_hash_of(dataset).hex():
            stale.append(dataset.id)
    existing = set(Dataset.objects.values_list("id", flat=True))
    unretired = []
    for tx in outbox.writes_confirmed(kind="dataset_register"):
        if tx.function != "registerFor":
            continue  # the platform registers through the relay; args: id, provider, ...
        chain_dataset = str(tx.args[0]).lower()
        dataset_id = dataset_uuid(bytes.fromhex(chain_dataset[2:]))
        entry = indexed.get(chain_dataset)
        if dataset_id not in existing and (entry is None or not entry.retired):
            unretired.append((dataset_id, str(tx.args[1])))
    return stale, unretired[:500]
