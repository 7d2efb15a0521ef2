"""A dataset's privacy budget and the signed parameters' hash, through the agents and the outbox,
against a real anvil node: writes from the provider's custodial wallet, usage relayed by the
operator with the consumer's signature, refusals decoded by name, and the custodian's reading of
both.

(The chain tests of issue 11, apart from test_chain.py to keep each module short.)"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from dataspace.accounts.models import Role, Wallet
from dataspace.accounts.services import wallet_private_key
from dataspace.chain import agents, eip712, gateway, outbox
from dataspace.chain.encoding import dataset_chain_id, job_chain_id, label_hash, params_hash
from dataspace.chain.models import ChainTransaction
from dataspace.compute import custody
from dataspace.compute.models import Job
from dataspace.errors import ErrorCode
from dataspace.policies.models import Agreement
from tests.support.anvil import AnvilNode
from tests.support.space import TOKENS, funded_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
Status = ChainTransaction.Status
RHO = 10**9  # 1.0 rho in nano-rho


def confirmed(tx: ChainTransaction) -> ChainTransaction:
    done = outbox.write_progress(tx_id=tx.pk)
    assert done.status == Status.CONFIRMED, done.revert_reason
    return done


def refused(tx: ChainTransaction) -> str:
    """The decoded reason of a write the contract refuses (at gas estimation: no nonce taken)."""
    done = outbox.write_progress(tx_id=tx.pk)
    assert done.status == Status.FAILED, done.status
    assert done.nonce is None
    return done.revert_reason


@dataclass
class Market:
    """A provider's custodial wallet with a registered dataset, and a funded consumer."""

    provider: str
    consumer: Wallet
    dataset: uuid.UUID

    @property
    def chain_dataset(self) -> str:
        return "0x" + dataset_chain_id(self.dataset, provider=self.provider).hex()


@pytest.fixture
def market(anvil: AnvilNode) -> Market:
    provider, _ = funded_user("hospital", Role.PROVIDER)
    consumer, _ = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
    wallet = Wallet.objects.get(user=provider)
    return Market(wallet.address, Wallet.objects.get(user=consumer), register(wallet))


def register(wallet: Wallet) -> uuid.UUID:
    dataset = uuid.uuid4()
    confirmed(
        agents.DatasetRegistryAgent().register(
            dataset_id=dataset,
            provider_key=wallet_private_key(wallet=wallet),
            metadata_hash=b"\x01" * 32,
            content_hash=b"\x02" * 32,
        )
    )
    return dataset


def publish(market: Market, *, consumer_limit: int, dataset: uuid.UUID | None = None) -> ChainTransaction:
    return agents.UsageAgreementsAgent().publish_offer(
        key=f"offer:{uuid.uuid4()}",
        provider=market.provider,
        dataset_id=dataset or market.dataset,
        policy_hash=b"\x03" * 32,
        purposes=["research"],
        operations=["mean"],
        max_calls=10,
        price_per_call=10**18,
        duration_seconds=86400,
        consumer_limit=consumer_limit,
    )


def set_limit(market: Market, limit: int) -> ChainTransaction:
    return agents.UsageAgreementsAgent().set_dataset_privacy_limit(
        key=f"limit:{uuid.uuid4()}", provider=market.provider, dataset_id=market.dataset, limit=limit
    )


def agreement_for(market: Market, *, consumer_limit: int = RHO) -> int:
    """An offer of the market's dataset, accepted by its consumer: the agreement's id on chain."""
    agent = agents.UsageAgreementsAgent()
    offer = agents.receipt_event(
        confirmed(publish(market, consumer_limit=consumer_limit)), contract=agent.name, event="OfferPublished"
    )
    consumer = market.consumer.address
    confirmed(agent.approve_escrow(key=f"approve:{uuid.uuid4()}", consumer=consumer, amount=10 * 10**18))
    accepted = confirmed(
        agent.accept_offer(key=f"accept:{uuid.uuid4()}", consumer=consumer, offer_id=offer["offerId"], calls=10)
    )
    return int(agents.receipt_event(accepted, contract=agent.name, event="AgreementCreated")["agreementId"])


def record(
    market: Market,
    agreement_id: int,
    nonce: int,
    *,
    loss: int,
    params: dict[str, Any],
    signed_params: dict[str, Any] | None = None,
) -> tuple[bytes, ChainTransaction]:
    """The consumer signs a use (over ``signed_params`` if given, as a forger would have it) and
    the operator relays it with the hash of ``params``; returns the job id and the write."""
    agent = agents.UsageAgreementsAgent()
    job_id = job_chain_id(agreement_id=agreement_id, nonce=nonce)
    deadline = int(time.time()) + 3600
    usage = eip712.Usage(
        chain_id=gateway.chain_id(),
        contract=agent.address(),
        agreement_id=agreement_id,
        job_id=job_id,
        purpose=label_hash("research"),
        operation=label_hash("mean"),
        params_hash=params_hash(params if signed_params is None else signed_params),
        privacy_loss=loss,
        nonce=nonce,
        deadline=deadline,
    )
    signature = eip712.sign_usage(key=wallet_private_key(wallet=market.consumer), usage=usage)
    write = agent.record_usage(
        key=f"record:{job_id.hex()}:{uuid.uuid4()}",
        agreement_id=agreement_id,
        job_id=job_id,
        purpose="research",
        operation="mean",
        params_hash=params_hash(params),
        privacy_loss=loss,
        deadline=deadline,
        signature=signature,
    )
    return job_id, write


def test_dataset_budget_is_set_raised_spent_refused_and_refunded(market: Market) -> None:
    agent = agents.UsageAgreementsAgent()
    assert agent.dataset_privacy(market.dataset, provider=market.provider) == agents.DatasetPrivacyOnChain(
        0, 0, False, False
    )
    confirmed(set_limit(market, RHO))
    confirmed(set_limit(market, 2 * RHO))  # raised
    agreement = agreement_for(market)
    assert agent.dataset_privacy(market.dataset, provider=market.provider) == agents.DatasetPrivacyOnChain(
        2 * RHO, 0, False, True
    )

    spent, write = record(market, agreement, 0, loss=RHO, params={"column": "age"})
    confirmed(write)
    assert agent.usage(spent).privacy_loss == RHO
    assert agent.dataset_privacy(market.dataset, provider=market.provider).used == RHO
    # Lowering below what is spent is refused; down to it would be allowed.
    assert refused(set_limit(market, RHO - 1)) == (
        f"DatasetLimitBelowUsed(datasetId={market.chain_dataset}, limit={RHO - 1}, used={RHO})"
    )
    # One more nano-rho than is left: refused by name, nothing recorded.
    over, write = record(market, agreement, 1, loss=RHO + 1, params={"column": "age"})
    assert refused(write) == (
        f"DatasetBudgetExhausted(datasetId={market.chain_dataset}, used={RHO}, requested={RHO + 1}, limit={2 * RHO})"
    )
    assert agent.usage(over).status == agents.JobStatus.NONE

    # A refund gives the loss back to the dataset: the refused use now fits.
    confirmed(agent.refund(key="refund:spent", job_id=spent, reason="test"))
    assert agent.usage(spent).status == agents.JobStatus.REFUNDED
    assert agent.dataset_privacy(market.dataset, provider=market.provider).used == 0
    _, write = record(market, agreement, 1, loss=RHO + 1, params={"column": "age"})
    confirmed(write)
    assert agent.dataset_privacy(market.dataset, provider=market.provider) == agents.DatasetPrivacyOnChain(
        2 * RHO, RHO + 1, False, True
    )


def test_a_dataset_is_declared_non_personal_only_before_its_first_offer(market: Market) -> None:
    agent = agents.UsageAgreementsAgent()
    public = register(Wallet.objects.get(address=market.provider))
    confirmed(agent.declare_non_personal(key="declare:public", provider=market.provider, dataset_id=public))
    assert agent.dataset_privacy(public, provider=market.provider) == agents.DatasetPrivacyOnChain(0, 0, True, False)
    again = agent.declare_non_personal(key="declare:public-again", provider=market.provider, dataset_id=public)
    assert (
        refused(again)
        == f"DatasetAlreadyNonPersonal(datasetId=0x{dataset_chain_id(public, provider=market.provider).hex()})"
    )
    confirmed(publish(market, consumer_limit=0, dataset=public))  # no consumer limit needed
    assert agent.dataset_privacy(public, provider=market.provider).has_offers

    # A personal dataset is offered only with a consumer limit, and once offered stays personal.
    assert refused(publish(market, consumer_limit=0)) == f"ConsumerLimitRequired(datasetId={market.chain_dataset})"
    confirmed(publish(market, consumer_limit=RHO))
    late = agent.declare_non_personal(key="declare:late", provider=market.provider, dataset_id=market.dataset)
    assert refused(late) == f"DatasetHasOffers(datasetId={market.chain_dataset})"
    assert agent.dataset_privacy(market.dataset, provider=market.provider) == agents.DatasetPrivacyOnChain(
        0, 0, False, True
    )


def test_the_signed_params_hash_is_read_back_from_the_usage_event(market: Market, settings: Any) -> None:
    agent = agents.UsageAgreementsAgent()
    confirmed(set_limit(market, RHO))
    agreement = agreement_for(market)
    params = {"column": "bmi", "where": {"column": "region", "equals": "north"}}
    job_id, write = record(market, agreement, 7, loss=RHO // 10, params=params)
    recorded_in = confirmed(write).block_number
    for i in range(3):  # the event sinks a few blocks below the head
        confirmed(set_limit(market, RHO + i))
    assert gateway.web3().eth.block_number > (recorded_in or 0) + 2
    settings.CHAIN_INDEXER_CHUNK = 2  # found by walking back range by range
    assert agent.usage_params_hash(job_id) == params_hash(params)
    assert agent.usage_params_hash(job_chain_id(agreement_id=agreement, nonce=8)) is None  # never recorded


def test_a_forged_params_hash_breaks_the_consumer_signature(market: Market) -> None:
    agreement = agreement_for(market, consumer_limit=RHO)
    job_id, write = record(market, agreement, 0, loss=0, params={"column": "salary"}, signed_params={"column": "age"})
    reason = refused(write)
    assert reason.startswith("InvalidSignature(recovered=0x")
    assert reason.endswith(f"expected={market.consumer.address.lower()})")
    assert agents.UsageAgreementsAgent().usage(job_id).status == agents.JobStatus.NONE


def test_the_custodian_checks_the_loss_and_the_signed_params_on_chain(market: Market) -> None:
    confirmed(set_limit(market, RHO))
    agreement = agreement_for(market)
    params = {"column": "age"}
    job_id, write = record(market, agreement, 0, loss=RHO // 4, params=params)
    confirmed(write)

    def job(**changed: Any) -> Job:
        fields = {"chain_job_id": "0x" + job_id.hex(), "dataset_id": market.dataset, "request_params": params}
        made = Job(**{**fields, "rho": 0.25, **changed})
        made.agreement = Agreement(chain_agreement_id=agreement)
        return made

    custody._check_chain(job())  # as signed and recorded
    with pytest.raises(custody.CustodyRefused) as error:
        custody._check_chain(job(request_params={"column": "bmi"}))
    assert error.value.code == ErrorCode.PARAMS_MISMATCH
    with pytest.raises(custody.CustodyRefused) as error:
        custody._check_chain(job(rho=0.5))
    assert error.value.code == ErrorCode.EPSILON_MISMATCH
