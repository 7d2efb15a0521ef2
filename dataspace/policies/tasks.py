"""Following offers and agreements to the chain (queue ``chain``)."""

from __future__ import annotations

import uuid
from typing import Any

from celery import shared_task
from django.conf import settings

from dataspace.chain import gateway
from dataspace.policies import services


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=600)
def follow_offer(self: Any, offer_id: str) -> None:
    try:
        done = services.offer_progress(offer_id=uuid.UUID(offer_id))
    except gateway.ChainUnavailable as exc:
        raise self.retry(countdown=min(30, 2 ** min(self.request.retries, 5)), exc=exc) from None
    if not done:
        raise self.retry(countdown=settings.CHAIN_POLL_SECONDS)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=600)
def follow_agreement(self: Any, agreement_id: str) -> None:
    try:
        done = services.agreement_progress(agreement_id=uuid.UUID(agreement_id))
    except gateway.ChainUnavailable as exc:
        raise self.retry(countdown=min(30, 2 ** min(self.request.retries, 5)), exc=exc) from None
    if not done:
        raise self.retry(countdown=settings.CHAIN_POLL_SECONDS)


@shared_task
def sweep_policy_followups() -> int:
    offers, agreements = services.pending_followups()
    for offer_id in offers:
        follow_offer.delay(str(offer_id))
    for agreement_id in agreements:
        follow_agreement.delay(str(agreement_id))
    return len(offers) + len(agreements)
