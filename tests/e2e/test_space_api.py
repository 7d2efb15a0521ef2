"""GET /api/space/ (issue 12): everything an auditor's tools need besides the chain itself,
public, read from the deployed contracts on a real anvil node."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from rest_framework.test import APIClient

from dataspace.chain import deploy, gateway
from dataspace.compute import receipts
from tests.support.anvil import AnvilNode

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
CONTRACTS = {"AlgorithmApprovals", "CustodianRegistry", "DatasetRegistry", "DevToken", "UsageAgreements"}


def space() -> dict[str, Any]:
    response = APIClient().get("/api/space/")  # no credentials
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def test_space_tells_auditors_the_chain_contracts_token_custodian_and_tee(anvil: AnvilNode, settings: Any) -> None:
    settings.CHAIN_PUBLIC_RPC_URL = "https://rpc.example.org/redlake"
    body = space()
    assert body["chain_id"] == 31337
    assert body["rpc_url"] == "https://rpc.example.org/redlake"
    contracts = {c["name"]: c for c in body["contracts"]}
    assert set(contracts) == CONTRACTS
    for deployed in gateway.deployments():
        assert contracts[deployed.name]["address"] == deployed.address
        assert len(gateway.web3().eth.get_code(deployed.address)) > 0  # type: ignore[arg-type]
    assert body["token"] == {"address": contracts["DevToken"]["address"], "symbol": "rEUR", "decimals": 18}
    [custodian] = body["custodians"]
    assert custodian["address"] == receipts.custodian().address
    assert custodian["valid_until_block"] is None
    assert custodian["valid_from_block"] >= contracts["CustodianRegistry"]["deployed_block"]
    assert body["tee"] == {"backend": "sandbox", "label": "SIMULATED", "simulated": True}


def test_a_rotation_shows_both_custodians_with_their_blocks(anvil: AnvilNode) -> None:
    successor = Account.create().address
    assert "valid from block" in deploy.custodian_register(address=successor)
    assert "already registered" in deploy.custodian_register(address=successor)
    first, second = space()["custodians"]
    assert first["address"] == receipts.custodian().address
    assert second == {"address": successor, "valid_from_block": first["valid_until_block"], "valid_until_block": None}


def test_redeploying_finds_the_contracts_and_keeps_the_custodian(anvil: AnvilNode) -> None:
    lines = list(deploy.deploy_all())
    assert all("found at" in line for line in lines[:-1])
    assert lines[-1].endswith("(already registered)")
    assert len(space()["custodians"]) == 1
