"""What an auditor needs to check the space with nothing but the chain (``GET /api/space/``):
the chain, where to read it, every contract's address, the payment token, the custodian's
receipt addresses with the blocks each was valid at (from CustodianRegistry, not the database),
and whether TEE execution is simulated."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from dataspace.chain import agents, gateway
from enclaves.attestation.evidence import TeeType


def space_describe() -> dict[str, Any]:
    """Reads the node (``ChainUnavailable`` if it is away): token and custodians are the
    contracts' answers, so what this shows is what an auditor's own node shows."""
    deployed = gateway.deployments()
    usage = gateway.contract("UsageAgreements")
    token_address = str(gateway.view(usage.functions.token()))
    token = gateway.contract("DevToken", address=token_address)  # any ERC-20's metadata ABI
    tee = TeeType(settings.TEE_BACKEND)
    return {
        "chain_id": gateway.chain_id(),
        "rpc_url": settings.CHAIN_PUBLIC_RPC_URL or settings.CHAIN_RPC_URL,
        "contracts": [
            {"name": d.name, "address": d.address, "deployed_block": d.block_number, "tx_hash": d.tx_hash}
            for d in deployed
        ],
        "token": {
            "address": token_address,
            "symbol": str(gateway.view(token.functions.symbol())),
            "decimals": int(gateway.view(token.functions.decimals())),
        },
        "custodians": [
            {"address": p.address, "valid_from_block": p.valid_from, "valid_until_block": p.valid_until}
            for p in agents.CustodianRegistryAgent().history()
        ],
        "tee": {"backend": tee.value, "label": tee.label, "simulated": tee.simulated},
    }
