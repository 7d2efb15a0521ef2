"""Reads the contracts' events into ``ChainEvent``: bounded block ranges up to head minus the
confirmation depth, a reorg noticed by the stored block hash (then rewound), and one indexer at a
time per chain (a second one running concurrently finds the cursor locked and leaves)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from eth_utils.crypto import keccak
from web3 import Web3
from web3._utils.events import get_event_data

from dataspace.chain import artifacts, gateway
from dataspace.chain.models import ChainEvent, Deployment, IndexerCursor

logger = logging.getLogger(__name__)
REORG_REWIND = 64
MIN_CHUNK = 16


@dataclass
class IndexReport:
    from_block: int
    to_block: int
    events: int
    rewound_to: int | None = None


def _event_table(deployments: list[Deployment]) -> dict[tuple[str, bytes], tuple[str, dict[str, Any]]]:
    table: dict[tuple[str, bytes], tuple[str, dict[str, Any]]] = {}
    for deployed in deployments:
        for item in artifacts.load(deployed.name).abi:
            if item.get("type") == "event" and not item.get("anonymous"):
                signature = f"{item['name']}({','.join(artifacts.abi_type(i) for i in item['inputs'])})"
                table[(deployed.address.lower(), keccak(text=signature))] = (deployed.name, item)
    return table


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, int) and abs(value) > 2**53:
        return str(value)  # JSON numbers lose precision past 2^53; amounts stay exact as strings
    return value


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


def index_events(*, chunk: int | None = None) -> IndexReport | None:
    """Indexes the next range; returns None when another indexer holds the cursor."""
    w3 = gateway.connected_web3()
    chain_id = gateway.chain_id()
    deployments = list(Deployment.objects.filter(chain_id=chain_id))
    if not deployments:
        return IndexReport(0, -1, 0)
    chunk = chunk or settings.CHAIN_INDEXER_CHUNK
    start_block = min(d.block_number or 0 for d in deployments)
    IndexerCursor.objects.get_or_create(chain_id=chain_id, defaults={"block_number": start_block - 1, "block_hash": ""})
    head = w3.eth.block_number - settings.CHAIN_CONFIRMATIONS
    with transaction.atomic():
        cursor = IndexerCursor.objects.select_for_update(skip_locked=True).filter(chain_id=chain_id).first()
        if cursor is None:
            return None
        rewound = _rewind_if_reorged(w3, cursor, chain_id, start_block)
        first = cursor.block_number + 1
        last = min(head, first + chunk - 1)
        if last < first:
            return IndexReport(first, last, 0, rewound)
        logs, last = _logs(w3, deployments, first, last)
        table = _event_table(deployments)
        rows = []
        for log in logs:
            match = table.get((log["address"].lower(), bytes(log["topics"][0]))) if log["topics"] else None
            if match is None:
                continue
            name, abi = match
            decoded = get_event_data(w3.codec, abi, log)
            rows.append(
                ChainEvent(
                    chain_id=chain_id,
                    contract=name,
                    address=Web3.to_checksum_address(log["address"]),
                    event=decoded["event"],
                    args={k: _jsonable(v) for k, v in decoded["args"].items()},
                    block_number=log["blockNumber"],
                    block_hash=_hex(log["blockHash"]),
                    tx_hash=_hex(log["transactionHash"]),
                    log_index=log["logIndex"],
                )
            )
        ChainEvent.objects.bulk_create(rows, ignore_conflicts=True)
        cursor.block_number, cursor.block_hash = last, _hex(w3.eth.get_block(last)["hash"])
        cursor.save(update_fields=["block_number", "block_hash", "updated_at"])
    return IndexReport(first, last, len(rows), rewound)


def _rewind_if_reorged(w3: Web3, cursor: IndexerCursor, chain_id: int, floor: int) -> int | None:
    if not cursor.block_hash:
        return None
    if _hex(w3.eth.get_block(cursor.block_number)["hash"]) == cursor.block_hash:
        return None
    target = max(floor - 1, cursor.block_number - REORG_REWIND)
    logger.warning("chain %s reorganised below block %s; rewinding to %s", chain_id, cursor.block_number, target)
    ChainEvent.objects.filter(chain_id=chain_id, block_number__gt=target).delete()
    cursor.block_number = target
    cursor.block_hash = _hex(w3.eth.get_block(target)["hash"]) if target >= 0 else ""
    return target


def _logs(w3: Web3, deployments: list[Deployment], first: int, last: int) -> tuple[list[Any], int]:
    """Logs for [first, last], halving the range while the node refuses it as too large."""
    addresses = [Web3.to_checksum_address(d.address) for d in deployments]
    while True:
        try:
            return list(w3.eth.get_logs({"address": addresses, "fromBlock": first, "toBlock": last})), last
        except Exception:
            if last - first < MIN_CHUNK:
                raise
            last = first + (last - first) // 2


@dataclass
class IndexedDataset:
    """A dataset's registry entry as its indexed events tell it (read by sweepers and the
    reconciliation without a node)."""

    provider: str
    metadata_hash: str
    content_hash: str
    retired: bool = False


def indexed_datasets() -> dict[str, IndexedDataset]:
    """Every dataset the registry's indexed events know, by its chain id (0x hex, lower case):
    registration, then each update in block order, then retirement."""
    found: dict[str, IndexedDataset] = {}
    events = ChainEvent.objects.filter(
        chain_id=gateway.chain_id(),
        contract="DatasetRegistry",
        event__in=["DatasetRegistered", "DatasetUpdated", "DatasetRetired"],
    ).order_by("block_number", "log_index")
    for event in events:
        args, dataset_id = event.args, str(event.args["datasetId"]).lower()
        if event.event == "DatasetRegistered":
            found[dataset_id] = IndexedDataset(args["provider"], args["metadataHash"], args["contentHash"])
        elif dataset_id in found and event.event == "DatasetUpdated":
            found[dataset_id].metadata_hash, found[dataset_id].content_hash = args["metadataHash"], args["contentHash"]
        elif dataset_id in found:
            found[dataset_id].retired = True
    return found
