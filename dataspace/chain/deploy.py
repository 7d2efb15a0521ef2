"""Deploying the contracts (or finding them) and recording their addresses.

Deployment is a bootstrap step an operator runs (``manage.py chain deploy``), so it sends
synchronously rather than through the outbox; it is idempotent all the same: a recorded
deployment whose code is on chain is reused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.conf import settings
from eth_utils.crypto import keccak
from web3 import Web3

from dataspace.chain import artifacts, gateway
from dataspace.chain.models import Deployment
from dataspace.chain.signals import custodian_address_query


def _send(w3: Web3, call: Any, what: str) -> tuple[bytes, Any]:
    """Signs and sends one bootstrap transaction from the operator and waits for its receipt."""
    operator = gateway.operator()
    tx = call.build_transaction(
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
        raise gateway.ChainReverted(f"{what} reverted (transaction {tx_hash.hex()}).")
    return bytes(tx_hash), receipt


def _deploy(w3: Web3, name: str, args: list[Any]) -> Deployment:
    artifact = artifacts.load(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx_hash, receipt = _send(w3, factory.constructor(*args), f"Deploying {name}")
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


def deploy_all(*, with_dev_token: bool = True, custodian: str | None = None) -> Iterator[str]:
    """Deploys DevToken (development chains), DatasetRegistry, UsageAgreements,
    AlgorithmApprovals and CustodianRegistry in order, then registers the key custodian's
    receipt address (``custodian``, else CUSTODIAN_ADDRESS, else this process's receipt key)."""
    w3 = gateway.connected_web3()
    operator = gateway.operator().address
    plan: list[tuple[str, Any]] = []
    if with_dev_token:
        plan.append(("DevToken", lambda: [operator]))
    plan.append(("DatasetRegistry", lambda: [operator, operator]))
    plan.append(("UsageAgreements", lambda: [_address("DevToken"), _address("DatasetRegistry"), operator, operator]))
    plan.append(("AlgorithmApprovals", lambda: [_address("UsageAgreements")]))
    # The platform operator owns the custodian's history: it registers and rotates the address.
    plan.append(("CustodianRegistry", lambda: [operator]))
    for name, args in plan:
        existing = _existing(w3, name)
        if existing is not None:
            yield f"{name:<18} found at {existing.address}"
            continue
        deployed = _deploy(w3, name, args())
        yield f"{name:<18} deployed at {deployed.address} (block {deployed.block_number})"
    address = custodian or settings.CUSTODIAN_ADDRESS or _custodian_of_this_process()
    if not address:
        yield "custodian          not registered: pass --custodian or set CUSTODIAN_ADDRESS"
        return
    yield custodian_register(address=address)


def _custodian_of_this_process() -> str:
    answers = [address for _, address in custodian_address_query.send(sender=Deployment) if address]
    return str(answers[0]) if answers else ""


def custodian_register(*, address: str) -> str:
    """Makes ``address`` the custodian's receipt address from the next block on (a rotation if
    another one held it); nothing to do if it is the current one. Sent synchronously by the
    operator, like the deploy (an operator's bootstrap step, not platform traffic)."""
    w3 = gateway.connected_web3()
    registry = gateway.contract("CustodianRegistry")
    address = Web3.to_checksum_address(address)
    current = gateway.view(registry.functions.current())
    if str(current).lower() == address.lower():
        return f"custodian          {address} (already registered)"
    _, receipt = _send(w3, registry.functions.rotate(address), f"Registering custodian {address}")
    return f"custodian          {address} valid from block {receipt['blockNumber']}"
