"""Algorithms a consumer submits for an offer, and their provider's approval (pinned on chain).

A consumer submits a bundle (a Python module with ``run(tables, params)`` and a lockfile of the
worker runtime's packages, or a DuckDB SQL template; its output schema; its maximum output size)
for an offer that allows the operation ``algorithm``. It is stored in canonical form with its
measurement under this host's sandbox profile. The offer's provider reads the code, approves
(``AlgorithmApprovals.approve`` from their custodial wallet, through the outbox; usable once
confirmed), rejects, or revokes an approval (``revoke``; the algorithm's queued jobs are failed
and refunded). An offer with no approved algorithm runs none: the allow-list starts empty.

On a personal dataset every number an algorithm returns is clamped and noised by the custodian,
so each numeric leaf of the output schema must declare ``minimum`` and ``maximum``.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from dataspace import tasking
from dataspace.accounts.models import User
from dataspace.accounts.selectors import wallet_custodial_address
from dataspace.chain import agents, gateway, outbox
from dataspace.chain.models import ChainTransaction
from dataspace.compute import jobs, tee
from dataspace.compute.models import Algorithm
from dataspace.compute.tee_custody import numeric_leaves
from dataspace.errors import DomainError, ErrorCode, NotFound
from dataspace.policies.models import Offer
from enclaves.bundle import AlgorithmBundle, BundleInvalid, BundleKind

FOLLOW_TASK = "dataspace.compute.tasks.follow_algorithm"
Status = Algorithm.Status


def _bundle(document: dict[str, Any]) -> AlgorithmBundle:
    try:
        return AlgorithmBundle(
            kind=BundleKind(document["kind"]),
            source=document["source"],
            output_schema=document["output_schema"],
            max_output_bytes=document["max_output_bytes"],
            lockfile=document.get("lockfile") or {},
            name=document.get("name", ""),
        )
    except BundleInvalid as exc:
        raise DomainError(
            f"The algorithm bundle is invalid: {exc}.",
            code=ErrorCode.ALGORITHM_INVALID,
            details={"field": exc.field, "reason": exc.code},
        ) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DomainError(
            f"The algorithm bundle is invalid ({type(exc).__name__}): kind must be 'python' or 'sql'.",
            code=ErrorCode.ALGORITHM_INVALID,
        ) from None


def algorithm_submit(*, consumer: User, offer: Offer, document: dict[str, Any]) -> Algorithm:
    """Stores the bundle and its measurement for the provider's review."""
    if offer.status != Offer.Status.PUBLISHED or offer.chain_offer_id is None:
        raise DomainError(f"The offer is {offer.status}, not published.", code=ErrorCode.OFFER_NOT_PUBLISHED)
    if jobs.TEE_OPERATION not in offer.operations:
        raise DomainError("This offer does not allow the operation 'algorithm'.", code=ErrorCode.OPERATION_NOT_ALLOWED)
    bundle = _bundle(document)
    if not offer.dataset.non_personal:
        unbounded = [path for path, bounds in numeric_leaves(bundle.output_schema) if bounds is None]
        if unbounded:
            raise DomainError(
                "On a personal dataset every number of the output is clamped and noised: declare minimum and "
                f"maximum for {', '.join(unbounded)}.",
                code=ErrorCode.ALGORITHM_INVALID,
                details={"field": "output_schema", "paths": unbounded},
            )
    try:
        measurement = tee.measure(bundle)
    except BundleInvalid as exc:  # e.g. a lockfile the runtime does not match
        raise DomainError(
            f"The algorithm bundle cannot run here: {exc}.",
            code=ErrorCode.ALGORITHM_INVALID,
            details={"field": exc.field, "reason": exc.code},
        ) from None
    return Algorithm.objects.create(
        offer=offer,
        consumer=consumer,
        name=bundle.name,
        kind=str(bundle.kind),
        bundle=bundle.canonical_bytes().decode(),
        bundle_sha256=bundle.digest().hex(),
        measurement=measurement.hex(),
    )


def algorithm_list(*, viewer: User) -> QuerySet[Algorithm]:
    """The algorithms a user submitted, and those submitted for the user's offers."""
    return Algorithm.objects.select_related("offer", "consumer").filter(Q(consumer=viewer) | Q(offer__provider=viewer))


def algorithm_get(*, viewer: User, algorithm_id: uuid.UUID) -> Algorithm:
    found = algorithm_list(viewer=viewer).filter(pk=algorithm_id).first()
    if found is None:
        raise NotFound("algorithm")
    return found


def _for_provider(provider: User, algorithm_id: uuid.UUID) -> Algorithm:
    found = Algorithm.objects.select_related("offer").filter(pk=algorithm_id, offer__provider=provider).first()
    if found is None:
        raise NotFound("algorithm")
    return found


def _wrong_state(algorithm: Algorithm, action: str) -> DomainError:
    return DomainError(
        f"The algorithm is {algorithm.status}: it cannot be {action}.", code=ErrorCode.ALGORITHM_STATE_INVALID
    )


def algorithm_approve(*, provider: User, algorithm_id: uuid.UUID) -> Algorithm:
    """Approves the measurement for the offer: AlgorithmApprovals.approve from the provider's
    wallet (TEE type: the sandbox if the offer allows it; no hardware backend is configured)."""
    address = wallet_custodial_address(user=provider, action="approve algorithms")
    with transaction.atomic():
        algorithm = Algorithm.objects.select_for_update().get(pk=_for_provider(provider, algorithm_id).pk)
        if algorithm.status != Status.PENDING:
            raise _wrong_state(algorithm, "approved")
        offer = algorithm.offer
        if not offer.allow_sandbox:
            raise DomainError(
                "The offer does not allow sandbox (SIMULATED) execution and this space has no hardware TEE: "
                "the algorithm could never run.",
                code=ErrorCode.SANDBOX_NOT_ALLOWED,
            )
        assert offer.chain_offer_id is not None
        algorithm.approve_tx = agents.AlgorithmApprovalsAgent().approve(
            key=f"algorithm-approve:{algorithm.id}",
            provider=address,
            offer_id=offer.chain_offer_id,
            measurement=bytes.fromhex(algorithm.measurement),
            tee_types=int(agents.TeeBit.SANDBOX),
            bundle_hash=bytes.fromhex(algorithm.bundle_sha256),
        )
        algorithm.status = Status.APPROVING
        algorithm.decided_at = timezone.now()
        algorithm.save(update_fields=["approve_tx", "status", "decided_at"])
        tasking.enqueue_on_commit(FOLLOW_TASK, str(algorithm.id))
    return algorithm


def algorithm_reject(*, provider: User, algorithm_id: uuid.UUID, reason: str = "") -> Algorithm:
    with transaction.atomic():
        algorithm = Algorithm.objects.select_for_update().get(pk=_for_provider(provider, algorithm_id).pk)
        if algorithm.status != Status.PENDING:
            raise _wrong_state(algorithm, "rejected")
        algorithm.status = Status.REJECTED
        algorithm.reason = reason[:2000]
        algorithm.decided_at = timezone.now()
        algorithm.save(update_fields=["status", "reason", "decided_at"])
    return algorithm


def algorithm_revoke(*, provider: User, algorithm_id: uuid.UUID) -> Algorithm:
    """Revokes an approval: AlgorithmApprovals.revoke, and every job of the algorithm not yet
    computed is failed and refunded (the custodian would refuse its key anyway)."""
    address = wallet_custodial_address(user=provider, action="revoke algorithms")
    with transaction.atomic():
        algorithm = Algorithm.objects.select_for_update().get(pk=_for_provider(provider, algorithm_id).pk)
        if algorithm.status != Status.APPROVED:
            raise _wrong_state(algorithm, "revoked")
        assert algorithm.offer.chain_offer_id is not None
        algorithm.revoke_tx = agents.AlgorithmApprovalsAgent().revoke(
            key=f"algorithm-revoke:{algorithm.id}",
            provider=address,
            offer_id=algorithm.offer.chain_offer_id,
            measurement=bytes.fromhex(algorithm.measurement),
        )
        algorithm.status = Status.REVOKING
        algorithm.save(update_fields=["revoke_tx", "status"])
        tasking.enqueue_on_commit(FOLLOW_TASK, str(algorithm.id))
    jobs.tee_jobs_fail_for_revoked(algorithm_id=algorithm.id)
    return algorithm


def algorithm_progress(*, algorithm_id: uuid.UUID) -> bool:
    """Follows the pending approve or revoke write; True once it has an outcome."""
    algorithm = Algorithm.objects.get(pk=algorithm_id)

    def moved(source: Status, target: Status, **fields: Any) -> None:
        Algorithm.objects.filter(pk=algorithm.pk, status=source).update(status=target, **fields)

    if algorithm.status == Status.APPROVING:
        assert algorithm.approve_tx_id is not None
        return outbox.write_follow(
            tx_id=algorithm.approve_tx_id,
            on_confirmed=lambda tx: moved(Status.APPROVING, Status.APPROVED),
            on_failed=lambda tx: moved(Status.APPROVING, Status.FAILED, reason=tx.revert_reason),
        )
    if algorithm.status == Status.REVOKING:
        assert algorithm.revoke_tx_id is not None

        def revoke_refused(tx: ChainTransaction) -> None:
            # Still approved on chain: the custodian reads the chain, and this row stays revoking.
            raise gateway.ChainUnavailable(f"The revocation of {algorithm.id} reverted: {tx.revert_reason}")

        return outbox.write_follow(
            tx_id=algorithm.revoke_tx_id,
            on_confirmed=lambda tx: moved(Status.REVOKING, Status.REVOKED),
            on_failed=revoke_refused,
        )
    return True


def algorithm_usable(*, algorithm: Algorithm) -> None:
    """A job may ask for the algorithm only once its approval is confirmed on chain (read now)."""
    offer = algorithm.offer
    approved = algorithm.status == Status.APPROVED and offer.chain_offer_id is not None
    if approved:
        approved = agents.AlgorithmApprovalsAgent().is_approved(
            offer_id=offer.chain_offer_id,  # type: ignore[arg-type]
            measurement=bytes.fromhex(algorithm.measurement),
            tee_type=agents.TeeBit.SANDBOX,
        )
    if not approved:
        raise DomainError(
            f"The algorithm is not approved for this offer ({algorithm.status}).",
            code=ErrorCode.ALGORITHM_NOT_APPROVED,
        )
