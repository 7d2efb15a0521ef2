"""Contract agents: one class per contract, domain-named methods, ABI details hidden."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import IntEnum
from typing import Any

from django.utils import timezone
from hexbytes import HexBytes
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from dataspace.chain import eip712, gateway, outbox
from dataspace.chain.encoding import dataset_chain_id, label_hash
from dataspace.chain.models import ChainTransaction
from dataspace.errors import DomainError, ErrorCode

REGISTRATION_SIGNATURE_TTL = timedelta(days=30)


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

        provider = Account.from_key(provider_key).address
        chain_dataset = dataset_chain_id(dataset_id, provider=provider)
        deadline = int((timezone.now() + REGISTRATION_SIGNATURE_TTL).timestamp())
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

    @staticmethod
    def update_key(*, dataset_id: uuid.UUID, nonce: int, metadata_hash: bytes) -> str:
        return f"dataset-update:{dataset_id}:{nonce}:{metadata_hash.hex()}"

    @staticmethod
    def retire_key(*, dataset_id: uuid.UUID, nonce: int) -> str:
        return f"dataset-retire:{dataset_id}:{nonce}"

    def update(
        self, *, dataset_id: uuid.UUID, provider: str, metadata_hash: bytes, content_hash: bytes, nonce: int
    ) -> ChainTransaction:
        """Queues ``updateFor``: the operator relays the provider's DatasetChange, which the chain
        signer makes for the custodial wallet when it sends the write. One write per dataset
        nonce and hash (the idempotency key), so a redelivered follow-up never doubles it."""
        return self._change(
            kind="dataset_update",
            function="updateFor",
            dataset_id=dataset_id,
            provider=provider,
            action=eip712.ACTION_UPDATE,
            hashes=(metadata_hash, content_hash),
            nonce=nonce,
            key=self.update_key(dataset_id=dataset_id, nonce=nonce, metadata_hash=metadata_hash),
        )

    def retire(self, *, dataset_id: uuid.UUID, provider: str, nonce: int) -> ChainTransaction:
        """Queues ``retireFor`` with the provider's DatasetChange (zero hashes), signed like
        ``update``."""
        return self._change(
            kind="dataset_retire",
            function="retireFor",
            dataset_id=dataset_id,
            provider=provider,
            action=eip712.ACTION_RETIRE,
            hashes=None,
            nonce=nonce,
            key=self.retire_key(dataset_id=dataset_id, nonce=nonce),
        )

    def _change(
        self,
        *,
        kind: str,
        function: str,
        dataset_id: uuid.UUID,
        provider: str,
        action: int,
        hashes: tuple[bytes, bytes] | None,
        nonce: int,
        key: str,
    ) -> ChainTransaction:
        chain_dataset = dataset_chain_id(dataset_id, provider=provider)
        deadline = int((timezone.now() + REGISTRATION_SIGNATURE_TTL).timestamp())
        metadata_hash, content_hash = hashes or (bytes(32), bytes(32))
        typed_data = eip712.dataset_change_typed_data(
            chain_id=gateway.chain_id(),
            registry=gateway.deployment(self.name).address,
            dataset_id=chain_dataset,
            action=action,
            metadata_hash=metadata_hash,
            content_hash=content_hash,
            nonce=nonce,
            deadline=deadline,
        )
        signature = outbox.signature_by(signer=provider, typed_data=typed_data)
        middle = [_hex(metadata_hash), _hex(content_hash)] if hashes else []
        return outbox.write_enqueue(
            kind=kind,
            contract=self.name,
            function=function,
            args=[_hex(chain_dataset), *middle, deadline, signature],
            idempotency_key=key,
        )

    def nonce(self, dataset_id: uuid.UUID, *, provider: str) -> int:
        """The nonce the dataset's next signed change must carry."""
        chain_dataset = dataset_chain_id(dataset_id, provider=provider)
        return int(gateway.view(gateway.contract(self.name).functions.nonces(chain_dataset)))

    def get(self, dataset_id: uuid.UUID, *, provider: str) -> OnChainDataset | None:
        """The registry's entry for the provider's dataset; None if it was never registered."""
        provider, active, metadata_hash, content_hash = gateway.view(
            gateway.contract(self.name).functions.getDataset(dataset_chain_id(dataset_id, provider=provider))
        )
        if int(provider, 16) == 0:
            return None
        return OnChainDataset(provider, active, _hex(metadata_hash), _hex(content_hash))


@dataclass(frozen=True)
class CustodianPeriod:
    """One receipt-signing address of the key custodian and the blocks it was valid at
    (``valid_until`` exclusive; None while it is the current one)."""

    address: str
    valid_from: int
    valid_until: int | None


class CustodianRegistryAgent:
    """The custodian's receipt addresses over time, as CustodianRegistry publishes them."""

    name = "CustodianRegistry"

    def history(self) -> list[CustodianPeriod]:
        """Every address, oldest first, with its validity (an address overtaken in its own block
        was never valid and is left out)."""
        registry = gateway.contract(self.name)
        count = int(gateway.view(registry.functions.rotationCount()))
        entries = [gateway.view(registry.functions.rotationAt(i)) for i in range(count)]
        periods = []
        for i, (address, valid_from) in enumerate(entries):
            until = int(entries[i + 1][1]) if i + 1 < count else None
            if until is None or until > int(valid_from):
                periods.append(CustodianPeriod(str(address), int(valid_from), until))
        return periods

    def at(self, block: int) -> str | None:
        """The address valid at ``block`` (the contract's ``custodianAt``); None before the first
        registration."""
        try:
            return str(gateway.view(gateway.contract(self.name).functions.custodianAt(block)))
        except ContractLogicError as exc:
            if gateway.revert_reason(exc).startswith("NoCustodianAt("):
                return None
            raise


class DevTokenAgent:
    """The development chain's ERC-20 (anvil only): demo users pay with it."""

    name = "DevToken"

    def mint(self, *, to: str, amount: int, key: str) -> ChainTransaction:
        return outbox.write_enqueue(
            kind="dev_mint", contract=self.name, function="mint", args=[to, amount], idempotency_key=key
        )

    def balance(self, address: str) -> int:
        return int(gateway.view(gateway.contract(self.name).functions.balanceOf(address)))


def fund_for_gas(*, address: str, wei: int) -> None:
    """Gives an account ether on a development chain (anvil's anvil_setBalance), so custodial
    wallets can send their own transactions (accepting offers, withdrawing)."""
    if gateway.chain_id() != 31337:
        raise gateway.ChainUnavailable("Funding accounts is only possible on the development chain.")
    gateway.connected_web3().provider.make_request("anvil_setBalance", [address, hex(wei)])  # type: ignore[arg-type]


def receipt_event(tx: ChainTransaction, *, contract: str, event: str) -> dict[str, Any]:
    """The arguments of ``event`` emitted by a confirmed write (e.g. the new offer's id)."""
    receipt = gateway.connected_web3().eth.get_transaction_receipt(HexBytes(tx.tx_hash))
    handler = gateway.contract(contract).events[event]()
    for log in handler.process_receipt(receipt, errors=DISCARD):
        return dict(log["args"])
    raise gateway.ChainReverted(f"{tx.function} in {tx.tx_hash} emitted no {event}.")


class JobStatus(IntEnum):
    NONE = 0
    RECORDED = 1
    SETTLED = 2
    REFUNDED = 3


@dataclass(frozen=True)
class OnChainUsage:
    agreement_id: int
    status: JobStatus
    privacy_loss: int  # nano-rho


@dataclass(frozen=True)
class DatasetPrivacyOnChain:
    """A dataset's privacy budget as the contract keeps it (nano-rho)."""

    limit: int
    used: int
    non_personal: bool
    has_offers: bool


# ISSUE-16: an agreement created by a consumer's own wallet, read back from the chain.
@dataclass(frozen=True)
class AgreementCreated:
    agreement_id: int
    offer_id: int
    consumer: str
    calls: int
    amount: int
    expiry: int


class UsageAgreementsAgent:
    """Offers, agreements, dataset privacy budgets, usage and money. Users' own writes (publish,
    set a dataset's privacy, accept, withdraw) are sent from their custodial wallets; the
    operator relays usage records, settlements, refunds."""

    name = "UsageAgreements"

    def address(self) -> str:
        return gateway.deployment(self.name).address

    def publish_offer(
        self,
        *,
        key: str,
        provider: str,
        dataset_id: uuid.UUID,
        policy_hash: bytes,
        purposes: list[str],
        operations: list[str],
        max_calls: int,
        price_per_call: int,
        duration_seconds: int,
        consumer_limit: int,
        compute_rate: int = 0,
        max_cpu_millis: int = 0,
    ) -> ChainTransaction:
        """``consumer_limit``: the most nano-rho one consumer may spend through the offer (0 only
        on a dataset declared non-personal). ``max_cpu_millis`` > 0 makes the offer metered:
        each call also pays ``compute_rate`` per CPU-second it used, up to that maximum."""
        args = [
            _hex(dataset_chain_id(dataset_id, provider=provider)),
            _hex(policy_hash),
            [_hex(label_hash(p)) for p in purposes],
            [_hex(label_hash(o)) for o in operations],
            max_calls,
            price_per_call,
            duration_seconds,
            consumer_limit,
            compute_rate,
            max_cpu_millis,
        ]
        return outbox.write_enqueue(
            kind="offer_publish",
            contract=self.name,
            function="publishOffer",
            args=args,
            idempotency_key=key,
            sender=provider,
        )

    def set_dataset_privacy_limit(
        self, *, key: str, provider: str, dataset_id: uuid.UUID, limit: int
    ) -> ChainTransaction:
        """Sets the total nano-rho every use of the dataset may spend (its provider's wallet
        sends it; the contract refuses a limit below what is already spent)."""
        return outbox.write_enqueue(
            kind="dataset_privacy_limit",
            contract=self.name,
            function="setDatasetPrivacyLimit",
            args=[_hex(dataset_chain_id(dataset_id, provider=provider)), limit],
            idempotency_key=key,
            sender=provider,
        )

    def declare_non_personal(self, *, key: str, provider: str, dataset_id: uuid.UUID) -> ChainTransaction:
        """Declares the dataset non-personal (its provider's wallet sends it; only before the
        dataset's first offer, irreversible)."""
        return outbox.write_enqueue(
            kind="dataset_non_personal",
            contract=self.name,
            function="declareNonPersonal",
            args=[_hex(dataset_chain_id(dataset_id, provider=provider))],
            idempotency_key=key,
            sender=provider,
        )

    def approve_escrow(self, *, key: str, consumer: str, amount: int) -> ChainTransaction:
        return outbox.write_enqueue(
            kind="escrow_approve",
            contract=DevTokenAgent.name,
            function="approve",
            args=[self.address(), amount],
            idempotency_key=key,
            sender=consumer,
        )

    def accept_offer(self, *, key: str, consumer: str, offer_id: int, calls: int) -> ChainTransaction:
        return outbox.write_enqueue(
            kind="offer_accept",
            contract=self.name,
            function="acceptOffer",
            args=[offer_id, calls],
            idempotency_key=key,
            sender=consumer,
        )

    def record_usage(
        self,
        *,
        key: str,
        agreement_id: int,
        job_id: bytes,
        purpose: str,
        operation: str,
        params_hash: bytes,
        privacy_loss: int,
        deadline: int,
        signature: bytes | dict[str, Any],
    ) -> ChainTransaction:
        """``signature``: the consumer's own, or ``outbox.signature_by`` for a custodial wallet
        (the chain signer signs it when it sends the write)."""
        args = [
            agreement_id,
            _hex(job_id),
            _hex(label_hash(purpose)),
            _hex(label_hash(operation)),
            _hex(params_hash),
            privacy_loss,
            deadline,
            _hex(signature) if isinstance(signature, bytes) else signature,
        ]
        return outbox.write_enqueue(
            kind="usage_record", contract=self.name, function="recordUsage", args=args, idempotency_key=key
        )

    def settle(self, *, key: str, job_id: bytes, result_hash: bytes, attestation_hash: bytes) -> ChainTransaction:
        return outbox.write_enqueue(
            kind="usage_settle",
            contract=self.name,
            function="settle",
            args=[_hex(job_id), _hex(result_hash), _hex(attestation_hash)],
            idempotency_key=key,
        )

    # ISSUE-14: many unmetered jobs settled by one write under the Merkle root of their receipts.
    def settle_batch(self, *, key: str, root: bytes, job_ids: list[bytes]) -> ChainTransaction:
        return outbox.write_enqueue(
            kind="usage_settle_batch",
            contract=self.name,
            function="settleBatch",
            args=[_hex(root), [_hex(job_id) for job_id in job_ids]],
            idempotency_key=key,
        )

    def verify_receipt(self, *, batch_id: int, leaf: bytes, proof: list[bytes]) -> bool:
        """Whether the chain proves ``leaf`` part of batch ``batch_id`` (``verifyReceipt``)."""
        return bool(gateway.view(gateway.contract(self.name).functions.verifyReceipt(batch_id, leaf, proof)))

    def batch_root(self, batch_id: int) -> bytes:
        return bytes(gateway.view(gateway.contract(self.name).functions.batchRoot(batch_id)))

    # ISSUE-13: a metered offer's settlement carries what the sandbox measured.
    def settle_metered(
        self,
        *,
        key: str,
        job_id: bytes,
        result_hash: bytes,
        attestation_hash: bytes,
        cpu_millis: int,
        peak_memory_bytes: int,
        bytes_read: int,
    ) -> ChainTransaction:
        return outbox.write_enqueue(
            kind="usage_settle",
            contract=self.name,
            function="settleMetered",
            args=[_hex(job_id), _hex(result_hash), _hex(attestation_hash), [cpu_millis, peak_memory_bytes, bytes_read]],
            idempotency_key=key,
        )

    def refund(self, *, key: str, job_id: bytes, reason: str) -> ChainTransaction:
        return outbox.write_enqueue(
            kind="usage_refund",
            contract=self.name,
            function="refund",
            args=[_hex(job_id), _hex(label_hash(reason))],
            idempotency_key=key,
        )

    def withdraw(self, *, key: str, provider: str) -> ChainTransaction:
        return outbox.write_enqueue(
            kind="earnings_withdraw",
            contract=self.name,
            function="withdraw",
            args=[],
            idempotency_key=key,
            sender=provider,
        )

    def usage(self, job_id: bytes) -> OnChainUsage:
        agreement_id, status, loss = gateway.view(gateway.contract(self.name).functions.getUsage(job_id))
        return OnChainUsage(int(agreement_id), JobStatus(status), int(loss))

    def usage_params_hash(self, job_id: bytes) -> bytes | None:
        """The parameters' hash the consumer signed for a job, from its ``UsageRecorded`` event
        (the contract emits it and stores nothing); None if the job was never recorded."""
        found = gateway.latest_event(self.name, "UsageRecorded", indexed={"jobId": job_id})
        return None if found is None else bytes(found["paramsHash"])

    def dataset_privacy(self, dataset_id: uuid.UUID, *, provider: str) -> DatasetPrivacyOnChain:
        """``provider``: the dataset's provider's address (the dataset's chain id carries it)."""
        limit, used, non_personal, has_offers = gateway.view(
            gateway.contract(self.name).functions.getDatasetPrivacy(dataset_chain_id(dataset_id, provider=provider))
        )
        return DatasetPrivacyOnChain(int(limit), int(used), bool(non_personal), bool(has_offers))

    def agreement(self, agreement_id: int) -> dict[str, Any]:
        found = gateway.view(gateway.contract(self.name).functions.getAgreement(agreement_id))
        names = [
            "consumer",
            "provider",
            "offer_id",
            "calls_bought",
            "calls_used",
            "calls_settled",
            "calls_reclaimed",
            "price_per_call",
            "escrow",
            "pending",
            "expiry",
            "suspended",
            "metered",
        ]
        return dict(zip(names, found, strict=True))

    def withdrawable(self, address: str) -> int:
        return int(gateway.view(gateway.contract(self.name).functions.withdrawable(address)))

    def usage_typed_data_domain(self) -> dict[str, Any]:
        return {
            "name": "Redlake UsageAgreements",
            "version": "1",
            "chainId": gateway.chain_id(),
            "verifyingContract": self.address(),
        }

    # ISSUE-16: the platform recognises an agreement made from the consumer's own wallet.
    def agreement_created(self, *, tx_hash: str, offer_id: int, confirmations: int) -> AgreementCreated:
        """The agreement an ``acceptOffer`` transaction created on ``offer_id``, read from its
        receipt: mined, successful, sent to this contract, ``confirmations`` deep. Anything else
        is a ``DomainError`` naming what is wrong."""
        from web3.exceptions import TransactionNotFound

        w3 = gateway.connected_web3()
        try:
            receipt = w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            raise DomainError(
                "That transaction is not mined yet (or unknown to the chain): register the agreement once it is.",
                code=ErrorCode.CONFLICT,
                details={"tx_hash": tx_hash},
            ) from None
        if int(receipt["status"]) != 1:
            raise DomainError("That transaction reverted on chain.", code=ErrorCode.CHAIN_REVERTED)
        if str(receipt["to"] or "").lower() != self.address().lower():
            raise DomainError(
                "That transaction was not sent to this space's UsageAgreements contract.",
                code=ErrorCode.VALIDATION_FAILED,
            )
        depth = int(w3.eth.block_number) - int(receipt["blockNumber"])
        if depth < confirmations:
            raise DomainError(
                f"That transaction has {depth} of the {confirmations} confirmations needed; try again later.",
                code=ErrorCode.CONFLICT,
                details={"tx_hash": tx_hash},
            )
        handler = gateway.contract(self.name).events["AgreementCreated"]()
        for log in handler.process_receipt(receipt, errors=DISCARD):
            args = log["args"]
            if str(log["address"]).lower() == self.address().lower() and int(args["offerId"]) == offer_id:
                return AgreementCreated(
                    agreement_id=int(args["agreementId"]),
                    offer_id=int(args["offerId"]),
                    consumer=str(args["consumer"]),
                    calls=int(args["calls"]),
                    amount=int(args["amount"]),
                    expiry=int(args["expiry"]),
                )
        raise DomainError("That transaction created no agreement on this offer.", code=ErrorCode.VALIDATION_FAILED)


# ISSUE-13
class TeeBit(IntEnum):
    """AlgorithmApprovals' TEE type bits."""

    SANDBOX = 1
    NITRO = 2
    SGX = 4
    TDX = 8
    SEV_SNP = 16


class AlgorithmApprovalsAgent:
    """Which algorithm measurements an offer's provider approved, per TEE type. The provider's
    wallet sends approvals and revocations; the custodian reads ``is_approved`` before it
    releases a key."""

    name = "AlgorithmApprovals"

    def approve(
        self, *, key: str, provider: str, offer_id: int, measurement: bytes, tee_types: int, bundle_hash: bytes
    ) -> ChainTransaction:
        return outbox.write_enqueue(
            kind="algorithm_approve",
            contract=self.name,
            function="approve",
            args=[offer_id, _hex(measurement), tee_types, _hex(bundle_hash)],
            idempotency_key=key,
            sender=provider,
        )

    def revoke(self, *, key: str, provider: str, offer_id: int, measurement: bytes) -> ChainTransaction:
        return outbox.write_enqueue(
            kind="algorithm_revoke",
            contract=self.name,
            function="revoke",
            args=[offer_id, _hex(measurement)],
            idempotency_key=key,
            sender=provider,
        )

    def is_approved(self, *, offer_id: int, measurement: bytes, tee_type: TeeBit) -> bool:
        contract = gateway.contract(self.name)
        return bool(gateway.view(contract.functions.isApproved(offer_id, measurement, int(tee_type))))
