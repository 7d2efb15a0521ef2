"""Deploying the contracts (or finding them) and recording their addresses.

Deployment is a bootstrap step an operator runs (``manage.py chain deploy``), so it sends
synchronously rather than through the outbox; it is idempotent all the same: a recorded
deployment whose code is on chain is reused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from eth_utils.crypto import keccak
from web3 import Web3

from dataspace.chain import artifacts, gateway
from dataspace.chain.models import Deployment


def _deploy(w3: Web3, name: str, args: list[Any]) -> Deployment:
    artifact = artifacts.load(name)
    operator = gateway.operator()
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx = factory.constructor(*args).build_transaction(
        {
            "from": operator.address,
            "nonce": w3.eth.get_transaction_count(operator.address, "pending"),
            "chainId": gateway.chain_id(),
        }
    )
    signed = operator.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1:
        raise gateway.ChainReverted(f"Deploying {name} reverted (transaction {tx_hash.hex()}).")
    deployment, _ = Deployment.objects.update_or_create(
        chain_id=gateway.chain_id(),
        name=name,
        defaults={
            "address": str(receipt["contractAddress"]),
            "tx_hash": "0x" + bytes(tx_hash).hex(),
            "block_number": receipt["blockNumber"],
            "bytecode_hash": "0x" + keccak(hexstr=artifact.bytecode).hex(),
        },
    )
    return deployment


def _existing(w3: Web3, name: str) -> Deployment | None:
    found = Deployment.objects.filter(chain_id=gateway.chain_id(), name=name).first()
    if found is not None and len(w3.eth.get_code(Web3.to_checksum_address(found.address))) > 0:
        return found
    return None


def _address(name: str) -> str:
    return gateway.deployment(name).address


def deploy_all(*, with_dev_token: bool = True) -> Iterator[str]:
    """Deploys DevToken (development chains), DatasetRegistry and UsageAgreements in order."""
    w3 = gateway.connected_web3()
    operator = gateway.operator().address
    plan: list[tuple[str, Any]] = []
    if with_dev_token:
        plan.append(("DevToken", lambda: [operator]))
    plan.append(("DatasetRegistry", lambda: [operator, operator]))
    plan.append(("UsageAgreements", lambda: [_address("DevToken"), _address("DatasetRegistry"), operator, operator]))
    for name, args in plan:
        existing = _existing(w3, name)
        if existing is not None:
            yield f"{name:<16} found at {existing.address}"
            continue
        deployed = _deploy(w3, name, args())
        yield f"{name:<16} deployed at {deployed.address} (block {deployed.block_number})"
