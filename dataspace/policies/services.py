"""Publishing offers, accepting them, and reserving uses of an agreement.

The platform sends each user's own chain writes from their custodial wallet through the outbox,
then mirrors what the chain confirmed. Reservations keep concurrent requests within an
agreement's terms before anything is sent on chain: taken under the agreement's row lock,
released when the chain refuses the use or the job is refunded.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from dataspace import tasking
from dataspace.accounts.models import User, Wallet
from dataspace.accounts.selectors import wallet_custodial_address, wallet_get
from dataspace.catalog.models import Dataset
from dataspace.chain import agents, outbox
from dataspace.chain.encoding import rho_nano
from dataspace.chain.models import ChainTransaction
from dataspace.errors import DomainError, ErrorCode, NotFound
from dataspace.operation_names import OperationName
from dataspace.policies import odrl
from dataspace.policies.models import Agreement, Offer
from dataspace.privacy import onchain
from dataspace.privacy import services as privacy

Tx = ChainTransaction.Status
FOLLOW_OFFER_TASK = "dataspace.policies.tasks.follow_offer"
FOLLOW_AGREEMENT_TASK = "dataspace.policies.tasks.follow_agreement"


def _check_privacy_terms(dataset: Dataset, terms: odrl.Terms) -> None:
    """Differential privacy by default: an offer on a personal dataset gives each consumer a share
    of the dataset's budget (epsilon above zero, at most the dataset's total); only a dataset its
    provider declared non-personal is offered without noise."""
    if terms.non_personal != dataset.non_personal:
        raise DomainError("The offer's terms must state whether the dataset is non-personal.")
    if dataset.non_personal:
        if terms.privacy_budget != 0:
            raise DomainError(
                "The dataset is declared non-personal: its offers have no privacy budget (send 0).",
                code=ErrorCode.PRIVACY_TERMS_INVALID,
            )
        return
    if not 0 < terms.privacy_budget <= dataset.privacy_epsilon:
        raise DomainError(
            f"An offer on a personal dataset gives each consumer a privacy budget above 0 and at most the "
            f"dataset's total of {dataset.privacy_epsilon:g} (or declare the dataset non-personal before "
            "its first offer).",
            code=ErrorCode.PRIVACY_TERMS_INVALID,
        )


# ISSUE-13
def _check_tee_terms(terms: odrl.Terms) -> None:
    """Metering and limits mean something only for TEE execution; the chain takes at most 32
    bits of CPU-milliseconds and charges only metered offers."""
    tee = odrl.TEE_OPERATION in terms.operations
    if not tee and (terms.allow_sandbox or terms.compute_rate or terms.max_cpu_millis):
        raise DomainError(
            "allow_sandbox, compute_rate and max_cpu_millis are terms of the 'algorithm' operation; add it or "
            "leave them out.",
            code=ErrorCode.VALIDATION_FAILED,
        )
    if not 0 <= terms.max_cpu_millis < 2**32 or (terms.compute_rate and not terms.max_cpu_millis):
        raise DomainError(
            "A compute rate needs max_cpu_millis (1..2^32-1): the most CPU-milliseconds one call may be charged.",
            code=ErrorCode.VALIDATION_FAILED,
        )
    if not 16 * 1024 * 1024 <= terms.memory_limit_bytes <= 64 * 1024**3 or not 1 <= terms.wall_seconds <= 86400:
        raise DomainError(
            "memory_limit_bytes must be 16 MiB..64 GiB and wall_seconds 1..86400.", code=ErrorCode.VALIDATION_FAILED
        )


def offer_call_maximum(offer: Offer) -> int:
    """ISSUE-13: what one call escrows on chain: the price, plus on a metered offer the compute
    charge for max_cpu_millis (the contract's ``_callMaximum``); settleMetered returns the rest."""
    return int(offer.price_per_call) + int(offer.compute_rate) * offer.max_cpu_millis // 1000


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
    _check_privacy_terms(dataset, terms)
    _check_tee_terms(terms)  # ISSUE-13
    registration = dataset.chain_registration
    if registration is None or registration.status != Tx.CONFIRMED:
        raise DomainError(
            "The dataset is not registered on chain yet; publish the offer once its registration is confirmed.",
            code=ErrorCode.DATASET_NOT_ON_CHAIN,
        )
    if not onchain.terms_on_chain(dataset=dataset):
        onchain.terms_sync_request(dataset_id=dataset.id)
        raise DomainError(
            "The dataset's privacy terms are not pinned on chain yet; publish the offer once they are.",
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
            allow_sandbox=terms.allow_sandbox,
            compute_rate=terms.compute_rate,
            max_cpu_millis=terms.max_cpu_millis,
            memory_limit_bytes=terms.memory_limit_bytes,
            wall_seconds=terms.wall_seconds,
            policy=document,
            policy_hash="0x" + digest.hex(),
        )
        offer.publish_tx = _publish_write(offer=offer, address=address)
        offer.save(update_fields=["publish_tx"])
        tasking.enqueue_on_commit(FOLLOW_OFFER_TASK, str(offer.id))
    return offer


def _consumer_limit(offer: Offer) -> int:
    """The most nano-ρ one consumer may spend through the offer, as the chain counts it."""
    return rho_nano(privacy.rho_of(offer.privacy_budget))


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
        compute_rate=int(offer.compute_rate),  # ISSUE-13
        max_cpu_millis=offer.max_cpu_millis,
    )


def offer_progress(*, offer_id: uuid.UUID) -> bool:
    """Moves a pending offer on; True once it is published or failed."""
    offer = Offer.objects.select_related("publish_tx").get(pk=offer_id)
    if offer.status != Offer.Status.PENDING:
        return True
    assert offer.publish_tx_id is not None

    def published(tx: ChainTransaction) -> None:
        event = agents.receipt_event(tx, contract=agents.UsageAgreementsAgent.name, event="OfferPublished")
        Offer.objects.filter(pk=offer.pk, status=Offer.Status.PENDING).update(
            status=Offer.Status.PUBLISHED, chain_offer_id=int(event["offerId"])
        )

    def refused(tx: ChainTransaction) -> None:
        Offer.objects.filter(pk=offer.pk, status=Offer.Status.PENDING).update(
            status=Offer.Status.FAILED, failure=tx.revert_reason
        )

    return outbox.write_follow(tx_id=offer.publish_tx_id, on_confirmed=published, on_failed=refused)


def agreement_create(*, consumer: User, offer: Offer, calls: int) -> Agreement:
    if offer.status != Offer.Status.PUBLISHED or offer.chain_offer_id is None:
        raise DomainError(f"The offer is {offer.status}, not published.", code=ErrorCode.OFFER_NOT_PUBLISHED)
    if not 1 <= calls <= offer.max_calls:
        raise DomainError(f"Calls must be between 1 and {offer.max_calls}.", code=ErrorCode.VALIDATION_FAILED)
    address = wallet_custodial_address(user=consumer, action="accept offers")
    amount = calls * offer_call_maximum(offer)  # ISSUE-13: a metered call escrows its maximum
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


# ISSUE-16: an agreement a consumer made from their own wallet (approve + acceptOffer sent
# directly to the chain), recognised by the platform from the chain's own record.
def agreement_register_external(*, consumer: User, offer: Offer, tx_hash: str) -> tuple[Agreement, bool]:
    """Mirrors an agreement the consumer created on chain from their own (external) wallet.

    Trusts only the chain: the transaction must be mined, successful, sent to our UsageAgreements
    contract, at least ``CHAIN_CONFIRMATIONS`` deep, and emit ``AgreementCreated`` for this offer
    with the consumer's registered address as its consumer. Registering the same agreement again
    returns it (False: not created); another account cannot claim it. Returns (agreement, created)."""
    if offer.status != Offer.Status.PUBLISHED or offer.chain_offer_id is None:
        raise DomainError(f"The offer is {offer.status}, not published.", code=ErrorCode.OFFER_NOT_PUBLISHED)
    wallet = wallet_get(user=consumer)
    if wallet is None or wallet.kind != Wallet.Kind.EXTERNAL:
        raise DomainError(
            "Only an account with its own wallet (POST /api/me/wallet/register/) registers an agreement it "
            "created on chain; a custodial account accepts offers with {offer, calls}.",
            code=ErrorCode.WALLET_REQUIRED,
        )
    event = agents.UsageAgreementsAgent().agreement_created(
        tx_hash=tx_hash, offer_id=offer.chain_offer_id, confirmations=settings.CHAIN_CONFIRMATIONS
    )
    chain_agreement_id = event.agreement_id
    if event.consumer.lower() != wallet.address.lower():
        raise DomainError(
            f"The agreement was created by {event.consumer}, not by your wallet {wallet.address}.",
            code=ErrorCode.PERMISSION_DENIED,
        )
    existing = Agreement.objects.filter(chain_agreement_id=chain_agreement_id).first()
    if existing is not None:
        if existing.consumer_id != consumer.pk:
            raise DomainError("That agreement is registered to another account.", code=ErrorCode.CONFLICT)
        return existing, False
    try:
        with transaction.atomic():
            agreement = Agreement.objects.create(
                offer=offer,
                consumer=consumer,
                calls=event.calls,
                amount=event.amount,
                status=Agreement.Status.ACTIVE,
                chain_agreement_id=chain_agreement_id,
                expires_at=datetime.fromtimestamp(event.expiry, tz=UTC),
            )
    except IntegrityError:  # registered concurrently: the first registration wins
        return Agreement.objects.get(chain_agreement_id=chain_agreement_id, consumer=consumer), False
    return agreement, True


def agreement_check_active(*, agreement: Agreement) -> None:
    if agreement.status != Agreement.Status.ACTIVE or agreement.chain_agreement_id is None:
        raise DomainError(f"The agreement is {agreement.status}, not active.", code=ErrorCode.AGREEMENT_NOT_ACTIVE)


def agreement_evaluate(*, agreement: Agreement, usage: odrl.UsageRequest) -> None:
    """Evaluates ``usage`` against the agreement's policy as it stands (no lock): what
    ``agreement_reserve`` decides again, under the lock, before anything is reserved."""
    assert agreement.expires_at is not None
    odrl.evaluate(
        agreement.offer.policy,
        odrl.AgreementState(agreement.calls, agreement.calls_reserved, agreement.expires_at),
        usage,
    )


def agreement_reserve(*, agreement: Agreement, usage: odrl.UsageRequest) -> Agreement:
    """Evaluates ``usage`` against the agreement's policy and reserves one call.

    Call it inside the transaction that records the use: the agreement's row stays locked until
    that transaction ends, so concurrent requests are decided one at a time, and the reservation
    commits or rolls back with the use. Returns the locked agreement as it was before this use.
    The agreement must be active (``agreement_check_active``)."""
    locked = Agreement.objects.select_for_update().select_related("offer").get(pk=agreement.pk)
    agreement_evaluate(agreement=locked, usage=usage)
    Agreement.objects.filter(pk=locked.pk).update(calls_reserved=F("calls_reserved") + 1)
    return locked


def agreement_take_nonce(*, agreement: Agreement) -> int:
    """The next usage nonce of a custodial consumer (the platform signs for them); call it
    inside the reserving transaction, which holds the agreement's lock."""
    nonce = int(Agreement.objects.values_list("next_nonce", flat=True).get(pk=agreement.pk))
    Agreement.objects.filter(pk=agreement.pk).update(next_nonce=F("next_nonce") + 1)
    return nonce


def agreement_release_reservation(*, agreement_id: uuid.UUID) -> None:
    """Returns a reserved call (the chain refused the use, or it was refunded)."""
    Agreement.objects.filter(pk=agreement_id).update(calls_reserved=F("calls_reserved") - 1)


def earnings_withdraw(*, provider: User) -> ChainTransaction:
    address = wallet_custodial_address(user=provider, action="withdraw earnings")
    agent = agents.UsageAgreementsAgent()
    if agent.withdrawable(address) == 0:
        raise DomainError("There is nothing to withdraw yet.", code=ErrorCode.CONFLICT)
    return agent.withdraw(key=f"withdraw:{address}:{uuid.uuid4()}", provider=address)
