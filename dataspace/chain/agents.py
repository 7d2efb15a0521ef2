"""Contract agents: one class per contract, domain-named methods, ABI details hidden."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from dataspace.chain import eip712, gateway, outbox
from dataspace.chain.models import ChainTransaction

REGISTRATION_SIGNATURE_TTL = timedelta(days=30)


def dataset_chain_id(dataset_id: uuid.UUID) -> bytes:
    """The dataset's id on chain: its UUID, left-padded to 32 bytes (reversible, unique)."""
    return dataset_id.bytes.rjust(32, b"\0")


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


@dataclass(frozen=True)
class OnChainDataset:
    provider: str
    active: bool
    metadata_hash: str
    content_hash: str


class DatasetRegistryAgent:
    name = "DatasetRegistry"

    def register(
        self, *, dataset_id: uuid.UUID, provider_key: bytes, metadata_hash: bytes, content_hash: bytes
    ) -> ChainTransaction:
        """Queues the registration, relayed by the operator with the provider's signature."""
        from eth_account import Account

        chain_dataset = dataset_chain_id(dataset_id)
        deadline = int((timezone.now() + REGISTRATION_SIGNATURE_TTL).timestamp())
        provider = Account.from_key(provider_key).address
        signature = eip712.sign_dataset_change(
            key=provider_key,
            chain_id=gateway.chain_id(),
            registry=gateway.deployment(self.name).address,
            dataset_id=chain_dataset,
            action=eip712.ACTION_REGISTER,
            metadata_hash=metadata_hash,
            content_hash=content_hash,
            nonce=0,  # a new dataset's first change
            deadline=deadline,
        )
        return outbox.write_enqueue(
            kind="dataset_register",
            contract=self.name,
            function="registerFor",
            args=[_hex(chain_dataset), provider, _hex(metadata_hash), _hex(content_hash), deadline, _hex(signature)],
            idempotency_key=f"dataset-register:{dataset_id}",
        )

    def get(self, dataset_id: uuid.UUID) -> OnChainDataset | None:
        provider, active, metadata_hash, content_hash = (
            gateway.contract(self.name).functions.getDataset(dataset_chain_id(dataset_id)).call()
        )
        if int(provider, 16) == 0:
            return None
        return OnChainDataset(provider, active, _hex(metadata_hash), _hex(content_hash))


class DevTokenAgent:
    """The development chain's ERC-20 (anvil only): demo users pay with it."""

    name = "DevToken"

    def mint(self, *, to: str, amount: int, key: str) -> ChainTransaction:
        return outbox.write_enqueue(
            kind="dev_mint", contract=self.name, function="mint", args=[to, amount], idempotency_key=key
        )

    def balance(self, address: str) -> int:
        return int(gateway.contract(self.name).functions.balanceOf(address).call())


def fund_for_gas(*, address: str, wei: int) -> None:
    """Gives an account ether on a development chain (anvil's anvil_setBalance), so custodial
    wallets can send their own transactions (accepting offers, withdrawing)."""
    if gateway.chain_id() != 31337:
        raise gateway.ChainUnavailable("Funding accounts is only possible on the development chain.")
    gateway.connected_web3().provider.make_request("anvil_setBalance", [address, hex(wei)])  # type: ignore[arg-type]
