"""What an auditor may read of the platform's jobs: their public parts only.

# ISSUE-15: auditors could not list jobs (``/api/jobs/`` is the consumer's own list). The public
parts of a job are what the chain shows anyway, plus the platform's side of it: ids, states and
their times, the chain job id and transactions, the hashes, the receipt without its salt. Never
the result or the salt: with the salt and the commitment a low-entropy result (a count, a mean
rounded to 6 digits) is found by trying candidates. The consumer shares the salt, in their
receipt, with whom they choose. Providers see the same public parts of the jobs on their own
datasets (their usage and earnings).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from dataspace.accounts.models import Role, User
from dataspace.compute import selectors as compute_selectors
from dataspace.compute.models import Job
from dataspace.errors import DomainError, ErrorCode

REDACTED_RECEIPT_FIELDS = frozenset({"result_salt"})


def _visible_jobs(*, user: User) -> QuerySet[Job]:
    jobs = Job.objects.select_related(
        "agreement",
        "agreement__offer",
        "dataset",
        "record_tx",
        "settle_tx",
        "refund_tx",
        "batch_entry__batch__settle_tx",
    ).order_by("-requested_at")
    if user.has_role(Role.AUDITOR):
        return jobs
    return jobs.filter(dataset__provider=user)


def audit_job_list(
    *,
    user: User,
    dataset_id: uuid.UUID | None = None,
    agreement_id: uuid.UUID | None = None,
    status: str | None = None,
    chain_job_id: str | None = None,
) -> QuerySet[Job]:
    jobs = _visible_jobs(user=user)
    if dataset_id is not None:
        jobs = jobs.filter(dataset_id=dataset_id)
    if agreement_id is not None:
        jobs = jobs.filter(agreement_id=agreement_id)
    if status:
        jobs = jobs.filter(status=status)
    if chain_job_id:
        jobs = jobs.filter(chain_job_id=chain_job_id.lower())
    return jobs


def audit_job_get(*, user: User, job_id: uuid.UUID) -> Job:
    job = _visible_jobs(user=user).filter(pk=job_id).first()
    if job is None:
        raise DomainError("No such job.", code=ErrorCode.NOT_FOUND)
    return job


def public_receipt(job: Job) -> dict[str, Any] | None:
    """The custodian's receipt without the salt (so the commitment cannot be brute-forced), with
    its batch proof if the job was settled in a batch (ISSUE-14)."""
    receipt = compute_selectors.job_receipt(job)
    if receipt is None:
        return None
    return {k: v for k, v in receipt.items() if k not in REDACTED_RECEIPT_FIELDS}
