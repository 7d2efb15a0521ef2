"""Following offers and agreements to the chain (queue ``chain``), and their sweeper."""

from __future__ import annotations

import uuid
from typing import Any

from celery import shared_task

from dataspace import tasking
from dataspace.policies import selectors, services


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=600)
def follow_offer(self: Any, offer_id: str) -> None:
    tasking.run_step(self, lambda: services.offer_progress(offer_id=uuid.UUID(offer_id)))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=600)
def follow_agreement(self: Any, agreement_id: str) -> None:
    tasking.run_step(self, lambda: services.agreement_progress(agreement_id=uuid.UUID(agreement_id)))


@shared_task
def sweep_policy_followups() -> int:
    offers, agreements = selectors.offers_pending(), selectors.agreements_pending()
    for offer_id in offers:
        tasking.enqueue(services.FOLLOW_OFFER_TASK, str(offer_id))
    for agreement_id in agreements:
        tasking.enqueue(services.FOLLOW_AGREEMENT_TASK, str(agreement_id))
    return len(offers) + len(agreements)
