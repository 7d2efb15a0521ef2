"""Publishing offers and accepting them: the platform sends each user's own chain writes from
their custodial wallet through the outbox, then mirrors what the chain confirmed."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from django.db import transaction

from dataspace.accounts.models import User, Wallet
from dataspace.catalog.models import Dataset
from dataspace.chain import agents, outbox
from dataspace.chain.models import ChainTransaction
from dataspace.errors import DomainError, ErrorCode
from dataspace.policies import odrl
from dataspace.policies.models import Agreement, Offer

logger = logging.getLogger(__name__)
Tx = ChainTransaction.Status
MICRO = 1_000_000
MAX_DURATION = timedelta(days=3650)


def epsilon_micro(epsilon: float) -> int:
    """Epsilon as the contracts count it: integer millionths."""
    return round(epsilon * MICRO)


def custodial_address(user: User, *, action: str) -> str:
    wallet = Wallet.objects.filter(user=user).first()
    if wallet is None or wallet.kind != Wallet.Kind.CUSTODIAL:
        raise DomainError(
            f"To {action} through the platform the account needs a custodial wallet (POST /api/me/wallet/custodial/).",
            code=ErrorCode.WALLET_REQUIRED,
        )
    return wallet.address


def offer_publish(*, provider: User, dataset: Dataset, terms: odrl.Terms) -> Offer:
    from dataspace.compute.he.operations import REGISTRY

    if dataset.provider_id != provider.pk:
        raise DomainError("Only the dataset's provider can publish offers for it.", code=ErrorCode.NOT_FOUND)
    unknown = sorted(set(terms.operations) - set(REGISTRY))
    if unknown:
        raise DomainError(
            f"Unknown operations: {', '.join(unknown)}; known: {', '.join(sorted(REGISTRY))}.",
            code=ErrorCode.INVALID_OPERATION,
        )
    registration = dataset.chain_registration
    if registration is None or registration.status != Tx.CONFIRMED:
        raise DomainError(
            "The dataset is not registered on chain yet; publish the offer once its registration is confirmed.",
            code=ErrorCode.DATASET_NOT_ON_CHAIN,
        )
    address = custodial_address(provider, action="publish offers")
    offer_id = uuid.uuid4()
    document = odrl.policy_document(offer_id=offer_id, dataset_id=dataset.id, provider=address, terms=terms)
    digest = odrl.policy_hash(document)
    with transaction.atomic():
        offer = Offer.objects.create(
            id=offer_id,
            dataset=dataset,
            provider=provider,
            purposes=terms.purposes,
            operations=terms.operations,
            max_calls=terms.max_calls,
            price_per_call=terms.price_per_call,
            duration_seconds=terms.duration_seconds,
            privacy_budget=terms.privacy_budget,
            min_cohort=terms.min_cohort,
            policy=document,
            policy_hash="0x" + digest.hex(),
        )
        offer.publish_tx = agents.UsageAgreementsAgent().publish_offer(
            key=f"offer-publish:{offer.id}",
            provider=address,
            dataset_id=dataset.id,
            policy_hash=digest,
            purposes=terms.purposes,
            operations=terms.operations,
            max_calls=terms.max_calls,
            price_per_call=terms.price_per_call,
            duration_seconds=terms.duration_seconds,
            privacy_budget=epsilon_micro(terms.privacy_budget),
        )
        offer.save(update_fields=["publish_tx"])
        transaction.on_commit(lambda: _follow("offer", offer.id))
    return offer


def _follow(kind: str, object_id: uuid.UUID) -> None:
    from dataspace.policies import tasks

    task = tasks.follow_offer if kind == "offer" else tasks.follow_agreement
    try:
        task.delay(str(object_id))
    except Exception as exc:  # broker away: the sweeper follows it later
        logger.warning("could not queue %s %s follow-up (%s)", kind, object_id, type(exc).__name__)


def offer_progress(*, offer_id: uuid.UUID) -> bool:
    """Moves a pending offer on; True once it is settled either way."""
    offer = Offer.objects.select_related("publish_tx").get(pk=offer_id)
    if offer.status != Offer.Status.PENDING:
        return True
    assert offer.publish_tx is not None
    tx = outbox.write_progress(tx_id=offer.publish_tx.pk)
    if tx.status == Tx.FAILED:
        Offer.objects.filter(pk=offer.pk, status=Offer.Status.PENDING).update(
            status=Offer.Status.FAILED, failure=tx.revert_reason
        )
        return True
    if tx.status != Tx.CONFIRMED:
        return False
    event = agents.receipt_event(tx, contract=agents.UsageAgreementsAgent.name, event="OfferPublished")
    Offer.objects.filter(pk=offer.pk, status=Offer.Status.PENDING).update(
        status=Offer.Status.PUBLISHED, chain_offer_id=int(event["offerId"])
    )
    return True


def agreement_create(*, consumer: User, offer: Offer, calls: int) -> Agreement:
    if offer.status != Offer.Status.PUBLISHED or offer.chain_offer_id is None:
        raise DomainError(f"The offer is {offer.status}, not published.", code=ErrorCode.OFFER_NOT_PUBLISHED)
    if not 1 <= calls <= offer.max_calls:
        raise DomainError(f"Calls must be between 1 and {offer.max_calls}.", code=ErrorCode.VALIDATION_FAILED)
    address = custodial_address(consumer, action="accept offers")
    amount = calls * int(offer.price_per_call)
    balance = agents.DevTokenAgent().balance(address)
    if balance < amount:
        raise DomainError(
            f"The escrow needs {amount} token units; the wallet holds {balance}.", code=ErrorCode.INSUFFICIENT_FUNDS
        )
    agent = agents.UsageAgreementsAgent()
    with transaction.atomic():
        agreement = Agreement.objects.create(offer=offer, consumer=consumer, calls=calls, amount=amount)
        agreement.approve_tx = agent.approve_escrow(
            key=f"agreement-approve:{agreement.id}", consumer=address, amount=amount
        )
        agreement.save(update_fields=["approve_tx"])
        transaction.on_commit(lambda: _follow("agreement", agreement.id))
    return agreement


def agreement_progress(*, agreement_id: uuid.UUID) -> bool:
    """Approve, then accept, then mirror the agreement; True once it is settled either way. The
    accept waits for the approval: its gas estimate would revert without the allowance."""
    agreement = Agreement.objects.select_related("offer", "approve_tx", "accept_tx", "consumer").get(pk=agreement_id)
    if agreement.status != Agreement.Status.PENDING:
        return True
    assert agreement.approve_tx is not None
    approve = outbox.write_progress(tx_id=agreement.approve_tx.pk)
    if approve.status == Tx.FAILED:
        return _agreement_fail(agreement, approve.revert_reason)
    if approve.status != Tx.CONFIRMED:
        return False
    agent = agents.UsageAgreementsAgent()
    if agreement.accept_tx is None:
        assert agreement.offer.chain_offer_id is not None
        accept_tx = agent.accept_offer(
            key=f"agreement-accept:{agreement.id}",
            consumer=approve.sender,
            offer_id=agreement.offer.chain_offer_id,
            calls=agreement.calls,
        )
        Agreement.objects.filter(pk=agreement.pk, accept_tx__isnull=True).update(accept_tx=accept_tx)
        agreement.refresh_from_db()
    assert agreement.accept_tx is not None
    accept = outbox.write_progress(tx_id=agreement.accept_tx.pk)
    if accept.status == Tx.FAILED:
        return _agreement_fail(agreement, accept.revert_reason)
    if accept.status != Tx.CONFIRMED:
        return False
    event = agents.receipt_event(accept, contract=agent.name, event="AgreementCreated")
    Agreement.objects.filter(pk=agreement.pk, status=Agreement.Status.PENDING).update(
        status=Agreement.Status.ACTIVE,
        chain_agreement_id=int(event["agreementId"]),
        expires_at=datetime.fromtimestamp(int(event["expiry"]), tz=UTC),
    )
    return True


def _agreement_fail(agreement: Agreement, reason: str) -> bool:
    Agreement.objects.filter(pk=agreement.pk, status=Agreement.Status.PENDING).update(
        status=Agreement.Status.FAILED, failure=reason
    )
    return True


def earnings_withdraw(*, provider: User) -> ChainTransaction:
    address = custodial_address(provider, action="withdraw earnings")
    agent = agents.UsageAgreementsAgent()
    if agent.withdrawable(address) == 0:
        raise DomainError("There is nothing to withdraw yet.", code=ErrorCode.CONFLICT)
    return agent.withdraw(key=f"withdraw:{address}:{uuid.uuid4()}", provider=address)


def pending_followups() -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Offers and agreements still waiting on the chain (for the sweeper)."""
    offers = list(Offer.objects.filter(status=Offer.Status.PENDING).values_list("pk", flat=True)[:200])
    agreements = list(Agreement.objects.filter(status=Agreement.Status.PENDING).values_list("pk", flat=True)[:200])
    return offers, agreements
