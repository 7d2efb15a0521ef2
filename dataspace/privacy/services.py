"""Reserving, spending and returning privacy loss on a dataset; answers given once.

Invariants kept here:
- a dataset's committed loss (reserved + spent, composed by the accountant) never exceeds its
  limit, nor a consumer's share the offer's cap: both are checked and raised under the dataset
  budget's row lock, in the transaction that records the job;
- a loss is returned only while nothing that depends on the data has left the custodian; once an
  answer or a data-dependent refusal is released it is spent for good;
- a non-personal dataset has no budget: its jobs spend nothing and carry no noise.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from dataspace.accounts.models import User
from dataspace.canonical import canonical_json
from dataspace.catalog.models import Dataset
from dataspace.errors import DomainError, ErrorCode, NotFound
from dataspace.privacy import accountant
from dataspace.privacy.models import CachedAnswer, ConsumerShare, DatasetBudget, PrivacyLoss

Status = PrivacyLoss.Status
# Losses compose as floats inside OpenDP; a request that fills a budget exactly must still fit.
_TOLERANCE = 1e-12


def rho_of(epsilon: float) -> float:
    """The zCDP loss of a job that asks for ``epsilon`` at the space's δ."""
    return accountant.rho_for_epsilon(epsilon, settings.PRIVACY_DELTA)


def epsilon_of(rho: float) -> float:
    return accountant.epsilon_for_rho(rho, settings.PRIVACY_DELTA)


def dataset_rho_limit(dataset: Dataset) -> float:
    return 0.0 if dataset.non_personal else rho_of(dataset.privacy_epsilon)


def budget_get(*, dataset: Dataset, lock: bool = False) -> DatasetBudget:
    """The dataset's budget row (made on first use from its provider's terms); locked for the
    transaction when ``lock``."""
    try:
        budget, _ = DatasetBudget.objects.get_or_create(
            dataset=dataset, defaults={"rho_limit": dataset_rho_limit(dataset)}
        )
    except IntegrityError:
        if not Dataset.objects.filter(pk=dataset.pk).exists():
            raise NotFound("dataset") from None  # deleted while its budget row was being made
        raise
    if lock:
        budget = DatasetBudget.objects.select_for_update().get(pk=budget.pk)
    limit = dataset_rho_limit(dataset)
    if budget.rho_limit < limit:  # the provider raised the budget since
        budget.rho_limit = limit
        DatasetBudget.objects.filter(pk=budget.pk).update(rho_limit=limit)
    return budget


def _remaining_epsilon(limit: float, committed: float) -> float:
    return max(epsilon_of(max(limit - committed, 0.0)), 0.0)


# ISSUE-16: the budget a consumer has left, for GET /api/agreements/<id>/budget/.
def epsilon_left(*, dataset: Dataset, consumer: User, consumer_cap_epsilon: float) -> float:
    """Epsilon the consumer may still spend on ``dataset``: the smaller of what remains of their
    share and of the dataset's total (0 on a non-personal dataset, which spends none)."""
    if dataset.non_personal:
        return 0.0
    budget = budget_get(dataset=dataset)
    share = ConsumerShare.objects.filter(dataset=dataset, consumer=consumer).values_list("rho_committed", flat=True)
    spent = float(share.first() or 0.0)
    mine = _remaining_epsilon(rho_of(consumer_cap_epsilon), spent)
    return min(mine, _remaining_epsilon(budget.rho_limit, budget.rho_committed))


def loss_check(*, dataset: Dataset, consumer: User, rho: float, consumer_cap_rho: float, budget: DatasetBudget) -> None:
    """Refuses a loss the dataset or the consumer's share cannot take (``budget_exhausted``)."""
    if rho <= 0:
        return
    total = accountant.total_rho([budget.rho_committed, rho])
    if total > budget.rho_limit + _TOLERANCE:
        raise DomainError(
            f"The dataset's privacy budget cannot take this job: epsilon "
            f"{_remaining_epsilon(budget.rho_limit, budget.rho_committed):.4g} remains of "
            f"{dataset.privacy_epsilon:g} for all consumers together.",
            code=ErrorCode.BUDGET_EXHAUSTED,
            details={"scope": "dataset"},
        )
    share = ConsumerShare.objects.filter(dataset=dataset, consumer=consumer).values_list("rho_committed", flat=True)
    spent = float(share.first() or 0.0)
    if accountant.total_rho([spent, rho]) > consumer_cap_rho + _TOLERANCE:
        raise DomainError(
            f"Your share of this dataset's privacy budget cannot take this job: epsilon "
            f"{_remaining_epsilon(consumer_cap_rho, spent):.4g} remains of your share.",
            code=ErrorCode.BUDGET_EXHAUSTED,
            details={"scope": "consumer"},
        )


def loss_reserve(
    *, dataset: Dataset, consumer: User, job_id: uuid.UUID, rho: float, consumer_cap_rho: float
) -> PrivacyLoss | None:
    """Reserves ``rho`` for a job. Call it inside the transaction that records the job: the
    dataset budget's row stays locked until it ends, so concurrent jobs are decided one at a
    time and the reservation commits or rolls back with the job."""
    if rho <= 0:
        return None
    budget = budget_get(dataset=dataset, lock=True)
    loss_check(dataset=dataset, consumer=consumer, rho=rho, consumer_cap_rho=consumer_cap_rho, budget=budget)
    DatasetBudget.objects.filter(pk=budget.pk).update(rho_committed=accountant.total_rho([budget.rho_committed, rho]))
    share, _ = ConsumerShare.objects.get_or_create(dataset=dataset, consumer=consumer)
    ConsumerShare.objects.filter(pk=share.pk).update(rho_committed=accountant.total_rho([share.rho_committed, rho]))
    return PrivacyLoss.objects.create(
        dataset=dataset, consumer=consumer, job_id=job_id, kind=PrivacyLoss.Kind.JOB, rho=rho
    )


def loss_spend(*, job_id: uuid.UUID) -> None:
    """Something that depends on the data left the custodian for this job: its loss is spent."""
    PrivacyLoss.objects.filter(job_id=job_id, status=Status.RESERVED).update(status=Status.SPENT)


def loss_return(*, job_id: uuid.UUID) -> None:
    """Nothing of the data was released for this job: its reservation goes back."""
    loss = PrivacyLoss.objects.filter(job_id=job_id, status=Status.RESERVED).first()
    if loss is None:
        return
    with transaction.atomic():
        budget = DatasetBudget.objects.select_for_update().get(pk=loss.dataset_id)
        if not PrivacyLoss.objects.filter(pk=loss.pk, status=Status.RESERVED).update(status=Status.RETURNED):
            return
        live = PrivacyLoss.objects.filter(dataset_id=loss.dataset_id, status__in=[Status.RESERVED, Status.SPENT])
        DatasetBudget.objects.filter(pk=budget.pk).update(
            rho_committed=accountant.total_rho(list(live.values_list("rho", flat=True)))
        )
        if loss.consumer_id is not None:
            mine = live.filter(consumer_id=loss.consumer_id).values_list("rho", flat=True)
            ConsumerShare.objects.filter(dataset_id=loss.dataset_id, consumer_id=loss.consumer_id).update(
                rho_committed=accountant.total_rho(list(mine))
            )


def loss_record_ingest(*, dataset: Dataset, rho: float) -> None:
    """A loss spent while the encrypted store was built (bounds or bucket edges estimated
    privately): counted against the dataset like any release."""
    if rho <= 0:
        return
    with transaction.atomic():
        budget = budget_get(dataset=dataset, lock=True)
        PrivacyLoss.objects.create(dataset=dataset, kind=PrivacyLoss.Kind.INGEST, rho=rho, status=Status.SPENT)
        DatasetBudget.objects.filter(pk=budget.pk).update(
            rho_committed=accountant.total_rho([budget.rho_committed, rho])
        )


def query_key(*, store_version: str, operation: str, params: dict[str, Any], epsilon: float) -> str:
    """The canonical identity of a query on one build of a dataset's store: the same operation,
    parameters and ε are the same query, whoever asks."""
    body = {"store": store_version, "operation": operation, "params": params, "epsilon": epsilon}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def cached_answer_get(*, dataset_id: uuid.UUID, key: str) -> CachedAnswer | None:
    return CachedAnswer.objects.filter(dataset_id=dataset_id, query_key=key).first()


def cached_answer_put(*, dataset_id: uuid.UUID, key: str, answer: dict[str, Any], job_id: uuid.UUID) -> CachedAnswer:
    """Keeps the first answer to a query; a second one racing it yields to the first."""
    try:
        with transaction.atomic():
            return CachedAnswer.objects.create(dataset_id=dataset_id, query_key=key, answer=answer, first_job_id=job_id)
    except IntegrityError:
        return CachedAnswer.objects.get(dataset_id=dataset_id, query_key=key)
