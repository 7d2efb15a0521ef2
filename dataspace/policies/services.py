"""Publishing offers, accepting them, and reserving uses of an agreement.

The platform sends each user's own chain writes from their custodial wallet through the outbox,
then mirrors what the chain confirmed. Reservations keep concurrent requests within an
agreement's terms before anything is sent on chain: taken under the agreement's row lock,
released when the chain refuses the use or the job is refunded.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import F

from dataspace import tasking
from dataspace.accounts.models import User
from dataspace.accounts.selectors import wallet_custodial_address
from dataspace.catalog.models import Dataset
from dataspace.chain import agents, outbox
from dataspace.chain.encoding import rho_nano
from dataspace.chain.models import ChainTransaction
from dataspace.errors import DomainError, ErrorCode, NotFound
from dataspace.operation_names import OperationName
from dataspace.policies import odrl
from dataspace.policies.models import Agreement, Offer

Tx = ChainTransaction.Status
FOLLOW_OFFER_TASK = "dataspace.policies.tasks.follow_offer"
FOLLOW_AGREEMENT_TASK = "dataspace.policies.tasks.follow_agreement"


def offer_publish(*, provider: User, dataset: Dataset, terms: odrl.Terms) -> Offer:
    if dataset.provider_id != provider.pk:
        raise NotFound("dataset")
    known = {str(name) for name in OperationName}
    unknown = sorted(set(terms.operations) - known)
    if unknown:
        raise DomainError(
            f"Unknown operations: {', '.join(unknown)}; known: {', '.join(sorted(known))}.",
            code=ErrorCode.INVALID_OPERATION,
        )
    registration = dataset.chain_registration
    if registration is None or registration.status != Tx.CONFIRMED:
        raise DomainError(
            "The dataset is not registered on chain yet; publish the offer once its registration is confirmed.",
            code=ErrorCode.DATASET_NOT_ON_CHAIN,
        )
    address = wallet_custodial_address(user=provider, action="publish offers")
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
        # ISSUE-11: publishOffer is queued by offer_progress, once the dataset's privacy on chain
        # allows the offer.
        tasking.enqueue_on_commit(FOLLOW_OFFER_TASK, str(offer.id))
    return offer


def _consumer_limit(offer: Offer) -> int:
    # ISSUE-11: the offer's epsilon budget goes on chain as rho one to one until the accounting
    # speaks rho.
    return rho_nano(offer.privacy_budget)


def _dataset_privacy_write(*, offer: Offer, address: str) -> ChainTransaction | None:
    """The write that must be confirmed before the offer can be published, or None if the
    dataset's privacy on chain already allows it.

    ISSUE-11, until providers set these themselves: an offer without a privacy budget (no noise)
    needs the dataset declared non-personal (possible only before its first offer), and an offer
    with one raises the dataset's limit to at least one consumer's limit. Keyed so that a retry,
    or the next step of the same offer, finds the same write."""
    agent = agents.UsageAgreementsAgent()
    privacy = agent.dataset_privacy(offer.dataset_id)
    limit = _consumer_limit(offer)
    if limit == 0:
        if privacy.non_personal:
            return None
        return agent.declare_non_personal(
            key=f"dataset-non-personal:{offer.dataset_id}", provider=address, dataset_id=offer.dataset_id
        )
    if privacy.limit >= limit:
        return None
    return agent.set_dataset_privacy_limit(
        key=f"offer-privacy-limit:{offer.id}", provider=address, dataset_id=offer.dataset_id, limit=limit
    )


def _publish_write(*, offer: Offer, address: str) -> ChainTransaction:
    return agents.UsageAgreementsAgent().publish_offer(
        key=f"offer-publish:{offer.id}",
        provider=address,
        dataset_id=offer.dataset_id,
        policy_hash=bytes.fromhex(offer.policy_hash.removeprefix("0x")),
        purposes=list(offer.purposes),
        operations=list(offer.operations),
        max_calls=offer.max_calls,
        price_per_call=int(offer.price_per_call),
        duration_seconds=offer.duration_seconds,
        consumer_limit=_consumer_limit(offer),
    )


def offer_progress(*, offer_id: uuid.UUID) -> bool:
    """Moves a pending offer on (the dataset's privacy on chain, then publishOffer); True once it
    is published or failed. publishOffer waits for the privacy write: its gas estimate reverts
    before a declaration, and a published offer must find its dataset's limit set."""
    offer = Offer.objects.select_related("publish_tx", "provider").get(pk=offer_id)
    if offer.status != Offer.Status.PENDING:
        return True

    def refused(tx: ChainTransaction) -> None:
        Offer.objects.filter(pk=offer.pk, status=Offer.Status.PENDING).update(
            status=Offer.Status.FAILED, failure=tx.revert_reason
        )

    if offer.publish_tx_id is None:
        address = wallet_custodial_address(user=offer.provider, action="publish offers")
        privacy_tx = _dataset_privacy_write(offer=offer, address=address)
        if privacy_tx is not None:
            confirmed: list[ChainTransaction] = []
            if not outbox.write_follow(tx_id=privacy_tx.pk, on_confirmed=confirmed.append, on_failed=refused):
                return False
            if not confirmed:
                return True  # the dataset's privacy was refused: so is the offer
        publish_tx = _publish_write(offer=offer, address=address)
        Offer.objects.filter(pk=offer.pk, publish_tx__isnull=True).update(publish_tx=publish_tx)
        offer.refresh_from_db()
    assert offer.publish_tx_id is not None

    def published(tx: ChainTransaction) -> None:
        event = agents.receipt_event(tx, contract=agents.UsageAgreementsAgent.name, event="OfferPublished")
        Offer.objects.filter(pk=offer.pk, status=Offer.Status.PENDING).update(
            status=Offer.Status.PUBLISHED, chain_offer_id=int(event["offerId"])
        )

    return outbox.write_follow(tx_id=offer.publish_tx_id, on_confirmed=published, on_failed=refused)


def agreement_create(*, consumer: User, offer: Offer, calls: int) -> Agreement:
    if offer.status != Offer.Status.PUBLISHED or offer.chain_offer_id is None:
        raise DomainError(f"The offer is {offer.status}, not published.", code=ErrorCode.OFFER_NOT_PUBLISHED)
    if not 1 <= calls <= offer.max_calls:
        raise DomainError(f"Calls must be between 1 and {offer.max_calls}.", code=ErrorCode.VALIDATION_FAILED)
    address = wallet_custodial_address(user=consumer, action="accept offers")
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
        tasking.enqueue_on_commit(FOLLOW_AGREEMENT_TASK, str(agreement.id))
    return agreement


def agreement_progress(*, agreement_id: uuid.UUID) -> bool:
    """Approve, then accept, then mirror the agreement; True once it is active or failed. The
    accept waits for the approval: its gas estimate would revert without the allowance."""
    agreement = Agreement.objects.select_related("offer", "approve_tx", "accept_tx", "consumer").get(pk=agreement_id)
    if agreement.status != Agreement.Status.PENDING:
        return True
    assert agreement.approve_tx_id is not None

    def refused(tx: ChainTransaction) -> None:
        Agreement.objects.filter(pk=agreement.pk, status=Agreement.Status.PENDING).update(
            status=Agreement.Status.FAILED, failure=tx.revert_reason
        )

    approved: list[ChainTransaction] = []
    if not outbox.write_follow(tx_id=agreement.approve_tx_id, on_confirmed=approved.append, on_failed=refused):
        return False
    if not approved:
        return True  # the approval failed: so did the agreement
    agent = agents.UsageAgreementsAgent()
    if agreement.accept_tx_id is None:
        assert agreement.offer.chain_offer_id is not None
        accept_tx = agent.accept_offer(
            key=f"agreement-accept:{agreement.id}",
            consumer=approved[0].sender,
            offer_id=agreement.offer.chain_offer_id,
            calls=agreement.calls,
        )
        Agreement.objects.filter(pk=agreement.pk, accept_tx__isnull=True).update(accept_tx=accept_tx)
        agreement.refresh_from_db()
    assert agreement.accept_tx_id is not None

    def activated(tx: ChainTransaction) -> None:
        event = agents.receipt_event(tx, contract=agent.name, event="AgreementCreated")
        Agreement.objects.filter(pk=agreement.pk, status=Agreement.Status.PENDING).update(
            status=Agreement.Status.ACTIVE,
            chain_agreement_id=int(event["agreementId"]),
            expires_at=datetime.fromtimestamp(int(event["expiry"]), tz=UTC),
        )

    return outbox.write_follow(tx_id=agreement.accept_tx_id, on_confirmed=activated, on_failed=refused)


def agreement_check_active(*, agreement: Agreement) -> None:
    if agreement.status != Agreement.Status.ACTIVE or agreement.chain_agreement_id is None:
        raise DomainError(f"The agreement is {agreement.status}, not active.", code=ErrorCode.AGREEMENT_NOT_ACTIVE)


def agreement_reserve(*, agreement: Agreement, usage: odrl.UsageRequest) -> Agreement:
    """Evaluates ``usage`` against the agreement's policy and reserves one call and its epsilon.

    Call it inside the transaction that records the use: the agreement's row stays locked until
    that transaction ends, so concurrent requests are decided one at a time, and the reservation
    commits or rolls back with the use. Returns the locked agreement as it was before this use.
    The agreement must be active (``agreement_check_active``)."""
    locked = Agreement.objects.select_for_update().select_related("offer").get(pk=agreement.pk)
    assert locked.expires_at is not None
    odrl.evaluate(
        locked.offer.policy,
        odrl.AgreementState(locked.calls, locked.calls_reserved, locked.budget_reserved, locked.expires_at),
        usage,
    )
    Agreement.objects.filter(pk=locked.pk).update(
        calls_reserved=F("calls_reserved") + 1, budget_reserved=F("budget_reserved") + usage.epsilon
    )
    return locked


def agreement_take_nonce(*, agreement: Agreement) -> int:
    """The next usage nonce of a custodial consumer (the platform signs for them); call it
    inside the reserving transaction, which holds the agreement's lock."""
    nonce = int(Agreement.objects.values_list("next_nonce", flat=True).get(pk=agreement.pk))
    Agreement.objects.filter(pk=agreement.pk).update(next_nonce=F("next_nonce") + 1)
    return nonce


def agreement_release_reservation(*, agreement_id: uuid.UUID, epsilon: float) -> None:
    """Returns a reserved call and its epsilon (the chain refused the use, or it was refunded)."""
    Agreement.objects.filter(pk=agreement_id).update(
        calls_reserved=F("calls_reserved") - 1, budget_reserved=F("budget_reserved") - epsilon
    )


def earnings_withdraw(*, provider: User) -> ChainTransaction:
    address = wallet_custodial_address(user=provider, action="withdraw earnings")
    agent = agents.UsageAgreementsAgent()
    if agent.withdrawable(address) == 0:
        raise DomainError("There is nothing to withdraw yet.", code=ErrorCode.CONFLICT)
    return agent.withdraw(key=f"withdraw:{address}:{uuid.uuid4()}", provider=address)
