"""Policy reads. Visibility lives here: a published offer is anyone's to read, an unpublished
one only its provider's; an agreement is its consumer's and its offer's provider's. Anything
else is simply not found."""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from dataspace.accounts.models import User
from dataspace.errors import NotFound
from dataspace.policies.models import Agreement, Offer


def offer_list(*, viewer: User, dataset_id: uuid.UUID | None = None) -> QuerySet[Offer]:
    offers = Offer.objects.select_related("provider", "publish_tx").filter(
        Q(status=Offer.Status.PUBLISHED) | Q(provider=viewer)
    )
    if dataset_id is not None:
        offers = offers.filter(dataset_id=dataset_id)
    return offers


def offer_get(*, viewer: User, offer_id: uuid.UUID) -> Offer:
    offer = offer_list(viewer=viewer).filter(pk=offer_id).first()
    if offer is None:
        raise NotFound("offer")
    return offer


def agreement_list(*, viewer: User) -> QuerySet[Agreement]:
    """The viewer's agreements: as consumer, and on their offers as provider."""
    return Agreement.objects.select_related("consumer", "approve_tx", "accept_tx").filter(
        Q(consumer=viewer) | Q(offer__provider=viewer)
    )


def agreement_get(*, viewer: User, agreement_id: uuid.UUID) -> Agreement:
    agreement = agreement_list(viewer=viewer).filter(pk=agreement_id).first()
    if agreement is None:
        raise NotFound("agreement")
    return agreement


def agreement_get_consumed(*, consumer: User, agreement_id: uuid.UUID) -> Agreement:
    """An agreement the user holds as its consumer (the one they may run jobs under)."""
    agreement = (
        Agreement.objects.select_related("offer", "offer__dataset").filter(pk=agreement_id, consumer=consumer).first()
    )
    if agreement is None:
        raise NotFound("agreement")
    return agreement


def offers_pending() -> list[uuid.UUID]:
    """Offers still waiting on the chain (for the sweeper)."""
    return list(Offer.objects.filter(status=Offer.Status.PENDING).values_list("pk", flat=True)[:200])


def agreements_pending() -> list[uuid.UUID]:
    return list(Agreement.objects.filter(status=Agreement.Status.PENDING).values_list("pk", flat=True)[:200])


def holds_agreement_on(*, consumer: User, dataset_id: uuid.UUID) -> bool:
    """Whether the user holds an active agreement on an offer of this dataset."""
    return Agreement.objects.filter(
        consumer=consumer, offer__dataset_id=dataset_id, status=Agreement.Status.ACTIVE
    ).exists()


def dataset_has_offers(*, dataset_id: uuid.UUID) -> bool:
    return Offer.objects.filter(dataset_id=dataset_id).exists()
