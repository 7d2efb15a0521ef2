"""Asking for a job: the request checked against the policy, a call and its privacy loss
reserved, the use signed.

Every refusal here is decided on facts the consumer already has or that do not depend on the
data: the agreement, the policy's terms (purpose, operation, expiry, calls, epsilon, the privacy
budgets), whether the store is built, and the parameters against the store's schema. Nothing
here reads a count of the data: a cohort below k is decided later, by the custodian, on a
noisy count, and costs what an answer costs (no free oracle). The terms are evaluated again
under the agreement's and the dataset budget's row locks, so concurrent requests never
over-reserve. A request that passes becomes a REQUESTED job whose ``recordUsage`` write is in
the outbox, in the same transaction as its reservations.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from dataspace import tasking
from dataspace.accounts.models import User, Wallet
from dataspace.accounts.selectors import wallet_get
from dataspace.canonical import canonical_json
from dataspace.chain import agents, eip712, encoding, gateway, outbox
from dataspace.chain.encoding import job_chain_id, label_hash
from dataspace.compute import jobs, selectors
from dataspace.compute.he.operations import OperationRejected, get_operation
from dataspace.compute.models import Job
from dataspace.errors import DomainError, ErrorCode, NotFound
from dataspace.policies import odrl
from dataspace.policies import selectors as policy_selectors
from dataspace.policies import services as policy_services
from dataspace.policies.models import Agreement
from dataspace.privacy import services as privacy

SIGNATURE_TTL = timedelta(hours=1)


@dataclass(frozen=True)
class JobRequest:
    agreement_id: uuid.UUID
    operation: str
    params: dict[str, Any]
    purpose: str
    epsilon: float
    idempotency_key: str
    # A consumer with their own wallet signs the Usage message and sends these three; a custodial
    # consumer may leave them out and let the platform sign with their key.
    nonce: int | None = None
    deadline: int | None = None
    signature: str | None = None

    def digest(self) -> str:
        body = [str(self.agreement_id), self.operation, self.params, self.purpose, self.epsilon]
        return hashlib.sha256(canonical_json(body)).hexdigest()


def new_idempotency_key() -> str:
    return secrets.token_hex(16)


def job_request(*, consumer: User, request: JobRequest) -> tuple[Job, bool]:
    """Checks a request against the policy, reserves a call and its privacy loss, and queues
    recordUsage. Returns (job, created); a retry with the same idempotency key returns the first
    job."""
    existing = Job.objects.filter(consumer=consumer, idempotency_key=request.idempotency_key).first()
    if existing is not None:
        return _same_request(existing, request), False
    checked = _checked(consumer, request)
    agreement, dataset, wallet = checked.agreement, checked.agreement.offer.dataset, checked.wallet
    params, key, rho, consumer_cap = checked.params, checked.query_key, checked.rho, checked.consumer_cap_rho
    usage = checked.usage
    try:
        with transaction.atomic():
            locked = policy_services.agreement_reserve(agreement=agreement, usage=usage)
            job = _create(consumer, wallet, locked, request, params, rho=rho, query_key=key)
            privacy.loss_reserve(
                dataset=dataset, consumer=consumer, job_id=job.id, rho=rho, consumer_cap_rho=consumer_cap
            )
            tasking.enqueue_on_commit(jobs.STEP_TASKS[Job.Status.REQUESTED], str(job.id))
    except IntegrityError:
        # The same idempotency key raced us, or the nonce is taken: a replayed signature.
        existing = Job.objects.filter(consumer=consumer, idempotency_key=request.idempotency_key).first()
        if existing is not None:
            return _same_request(existing, request), False
        raise DomainError(
            "This usage signature's nonce was already used on the agreement.", code=ErrorCode.SIGNATURE_REPLAYED
        ) from None
    return job, True


# ISSUE-16: the checks of job_request, shared with usage_to_sign.
@dataclass(frozen=True)
class _Checked:
    agreement: Agreement
    wallet: Wallet
    usage: odrl.UsageRequest
    params: dict[str, Any]
    query_key: str
    rho: float
    consumer_cap_rho: float


def _checked(consumer: User, request: JobRequest, *, signed_by_consumer: bool | None = None) -> _Checked:
    """Everything decided before a job is reserved: the policy, the store, the parameters, the
    privacy loss against the budgets, and that the consumer has a wallet to sign with."""
    agreement = policy_selectors.agreement_get_consumed(consumer=consumer, agreement_id=request.agreement_id)
    policy_services.agreement_check_active(agreement=agreement)
    dataset = agreement.offer.dataset
    usage = odrl.UsageRequest(request.purpose, request.operation, request.epsilon, timezone.now())
    policy_services.agreement_evaluate(agreement=agreement, usage=usage)
    if request.operation == jobs.TEE_OPERATION:  # ISSUE-13: the tee engine: no encrypted store
        return _checked_tee(consumer, agreement, request, usage)
    store = selectors.encrypted_store_get_ready(dataset=dataset)
    layout = selectors.encrypted_store_layout(store)
    # Before validation: validating a category names whether it exists.
    _check_public_categories(request.params, dataset.public_value_columns)
    try:
        params = get_operation(request.operation).validate(request.params, layout)
    except OperationRejected as exc:
        raise DomainError(str(exc), code=ErrorCode.INVALID_OPERATION, details={"reason": str(exc.code)}) from None
    key = privacy.query_key(
        store_version=store.blob_prefix, operation=request.operation, params=params, epsilon=request.epsilon
    )
    # A query answered before is answered again from the cache: no new noise, no new loss. (A
    # consumer who signs their own usage signed its loss before knowing: they pay what they signed.)
    if signed_by_consumer is None:
        signed_by_consumer = request.signature is not None
    cached = not signed_by_consumer and privacy.cached_answer_get(dataset_id=dataset.id, key=key) is not None
    rho = 0.0 if dataset.non_personal or cached else privacy.rho_of(request.epsilon)
    consumer_cap = privacy.rho_of(agreement.offer.privacy_budget)
    privacy.loss_check(
        dataset=dataset,
        consumer=consumer,
        rho=rho,
        consumer_cap_rho=consumer_cap,
        budget=privacy.budget_get(dataset=dataset),
    )
    wallet = wallet_get(user=consumer)
    if wallet is None:
        raise DomainError("The account has no wallet to sign the usage with.", code=ErrorCode.WALLET_REQUIRED)
    return _Checked(agreement, wallet, usage, params, key, rho, consumer_cap)


# ISSUE-13: what GET /api/operations/ lists for ``algorithm`` (the portal's form, the SDK).
ALGORITHM_DESCRIPTION = (
    "Run an algorithm the offer's provider approved (POST /api/algorithms/, then the provider's approval on "
    'chain) inside a TEE over the whole dataset, as table "data"; the result passes the bundle\'s output '
    "schema and size, the cohort and, on a personal dataset, clamping and noise."
)
ALGORITHM_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "algorithm": {
            "type": "string",
            "format": "uuid",
            "description": "id of an algorithm approved for the agreement's offer",
        },
        "params": {
            "type": "object",
            "description": "the algorithm's own parameters (JSON, at most 64 KiB): run(tables, params), or the "
            "SQL template's $names",
        },
    },
    "required": ["algorithm"],
    "additionalProperties": False,
}
ALGORITHM_OUTPUT = "the algorithm's JSON result, as its output schema declares"


def tee_params(params: Any) -> tuple[uuid.UUID, dict[str, Any]]:
    """``{"algorithm": <id>, "params": {...}}``: the approved algorithm and its JSON parameters."""
    if not isinstance(params, dict) or set(params) - {"algorithm", "params"} or "algorithm" not in params:
        raise DomainError(
            'An algorithm job takes {"algorithm": <id>, "params": {...}}.', code=ErrorCode.INVALID_OPERATION
        )
    inner = params.get("params", {})
    if not isinstance(inner, dict) or len(canonical_json(inner)) > 64 * 1024:
        raise DomainError("params.params must be a JSON object of at most 64 KiB.", code=ErrorCode.INVALID_OPERATION)
    try:
        return uuid.UUID(str(params["algorithm"])), inner
    except ValueError:
        raise DomainError("params.algorithm must be an algorithm id.", code=ErrorCode.INVALID_OPERATION) from None


def _checked_tee(consumer: User, agreement: Agreement, request: JobRequest, usage: odrl.UsageRequest) -> _Checked:
    from dataspace.compute import algorithms
    from dataspace.compute.models import Algorithm

    algorithm_id, inner = tee_params(request.params)
    offer = agreement.offer
    algorithm = Algorithm.objects.select_related("offer").filter(pk=algorithm_id, offer=offer).first()
    if algorithm is None:
        raise NotFound("algorithm")
    if not offer.allow_sandbox:
        raise DomainError(
            "The offer does not allow sandbox (SIMULATED) execution and this space has no hardware TEE.",
            code=ErrorCode.SANDBOX_NOT_ALLOWED,
        )
    algorithms.algorithm_usable(algorithm=algorithm)
    dataset = offer.dataset
    rho = 0.0 if dataset.non_personal else privacy.rho_of(request.epsilon)
    consumer_cap = privacy.rho_of(offer.privacy_budget)
    privacy.loss_check(
        dataset=dataset,
        consumer=consumer,
        rho=rho,
        consumer_cap_rho=consumer_cap,
        budget=privacy.budget_get(dataset=dataset),
    )
    wallet = wallet_get(user=consumer)
    if wallet is None:
        raise DomainError("The account has no wallet to sign the usage with.", code=ErrorCode.WALLET_REQUIRED)
    params = {"algorithm": str(algorithm.id), "params": inner}
    return _Checked(agreement, wallet, usage, params, "", rho, consumer_cap)


# ISSUE-16: an own-wallet consumer asks what to sign before signing it.
def usage_to_sign(*, consumer: User, request: JobRequest) -> dict[str, Any]:
    """The EIP-712 Usage document an own-wallet consumer signs for ``request`` (with their
    ``nonce`` and ``deadline``): the request passes every check ``job_request`` makes first, and
    nothing is reserved. Every field but the privacy loss (nano-rho, from the space's epsilon-to-rho
    conversion) is one the consumer can recompute; the SDK does, before it signs."""
    checked = _checked(consumer, request, signed_by_consumer=True)
    if checked.wallet.kind != Wallet.Kind.EXTERNAL:
        raise DomainError(
            "A custodial wallet's usage is signed by the platform; send the job without a signature.",
            code=ErrorCode.WALLET_REQUIRED,
        )
    nonce, deadline = _own_nonce(request)
    return _usage_message(checked.agreement, request, rho=checked.rho, nonce=nonce, deadline=deadline).typed_data()


def _check_public_categories(params: Any, public: list[str]) -> None:
    """Categories are named in a request (a filter) or an answer (a group-by) only for the
    columns whose values the provider made public: an answer keyed by hidden category names
    would publish them, and a filter on one would tell whether a guessed name exists. Read from
    the parameters as sent (their validation comes after, and would answer that question)."""
    if not isinstance(params, dict):
        return
    found = params.get("where")
    where: dict[str, Any] = found if isinstance(found, dict) else {}
    candidates = (params.get("by"), where.get("column") if "equals" in where else None)
    named = [column for column in candidates if isinstance(column, str) and column]
    hidden = sorted({column for column in named if column not in public})
    if hidden:
        raise DomainError(
            f"The values of {', '.join(repr(c) for c in hidden)} are not public: it cannot be grouped or filtered "
            "by category.",
            code=ErrorCode.COLUMN_NOT_PUBLIC,
            details={"columns": hidden},
        )


def _same_request(job: Job, request: JobRequest) -> Job:
    if job.request_digest != request.digest():
        raise DomainError(
            "This idempotency key was already used for a different request.", code=ErrorCode.IDEMPOTENCY_KEY_REUSED
        )
    return job


def _usage_nonce(wallet: Wallet, agreement: Agreement, request: JobRequest) -> tuple[int, int]:
    """(nonce, deadline) of the usage signature: the platform's next for a custodial consumer,
    the consumer's own for a signed request."""
    if request.signature is None:
        if wallet.kind != Wallet.Kind.CUSTODIAL:
            raise DomainError(
                "Your wallet is your own: sign the Usage message and send nonce, deadline and signature.",
                code=ErrorCode.SIGNATURE_INVALID,
            )
        deadline = int((timezone.now() + SIGNATURE_TTL).timestamp())
        return policy_services.agreement_take_nonce(agreement=agreement), deadline
    return _own_nonce(request)


def _own_nonce(request: JobRequest) -> tuple[int, int]:
    if request.nonce is None or request.deadline is None or not 0 < request.nonce < 2**128:
        raise DomainError("A signed request needs nonce (1..2^128-1) and deadline.", code=ErrorCode.VALIDATION_FAILED)
    if request.deadline <= timezone.now().timestamp():
        raise DomainError("The usage signature's deadline has passed.", code=ErrorCode.SIGNATURE_EXPIRED)
    return request.nonce, request.deadline


def _usage_signature(wallet: Wallet, request: JobRequest, usage: eip712.Usage) -> bytes | dict[str, Any]:
    """The consumer's own signature, checked; or, for a custodial wallet, the request that the
    chain signer signs the usage when it sends it (this tier never holds the wallet's key)."""
    if request.signature is None:
        return outbox.signature_by(signer=wallet.address, typed_data=usage.typed_data())
    try:
        signature = bytes.fromhex(request.signature.removeprefix("0x"))
        signer = eip712.recover_usage_signer(signature=signature, usage=usage)
    except Exception:
        raise DomainError("The usage signature is malformed.", code=ErrorCode.SIGNATURE_INVALID) from None
    if signer.lower() != wallet.address.lower():
        raise DomainError(
            "The usage signature was not made by your wallet for this request.", code=ErrorCode.SIGNATURE_INVALID
        )
    return signature


def _usage_message(agreement: Agreement, request: JobRequest, *, rho: float, nonce: int, deadline: int) -> eip712.Usage:
    assert agreement.chain_agreement_id is not None
    return eip712.Usage(
        chain_id=gateway.chain_id(),
        contract=agents.UsageAgreementsAgent().address(),
        agreement_id=agreement.chain_agreement_id,
        job_id=job_chain_id(agreement_id=agreement.chain_agreement_id, nonce=nonce),
        purpose=label_hash(request.purpose),
        operation=label_hash(request.operation),
        # The consumer signs the parameters as they sent them, not as we normalised them.
        params_hash=encoding.params_hash(request.params),
        privacy_loss=encoding.rho_nano(rho),
        nonce=nonce,
        deadline=deadline,
    )


def _create(
    consumer: User,
    wallet: Wallet,
    agreement: Agreement,
    request: JobRequest,
    params: dict[str, Any],
    *,
    rho: float,
    query_key: str,
) -> Job:
    assert agreement.chain_agreement_id is not None
    agent = agents.UsageAgreementsAgent()
    nonce, deadline = _usage_nonce(wallet, agreement, request)
    usage = _usage_message(agreement, request, rho=rho, nonce=nonce, deadline=deadline)
    job_id, params_hash, privacy_loss = usage.job_id, usage.params_hash, usage.privacy_loss
    signature = _usage_signature(wallet, request, usage)
    job = Job.objects.create(
        consumer=consumer,
        agreement=agreement,
        dataset=agreement.offer.dataset,
        idempotency_key=request.idempotency_key,
        request_digest=request.digest(),
        operation=request.operation,
        request_params=request.params,
        params=params,
        purpose=request.purpose,
        epsilon=request.epsilon,
        rho=rho,
        query_key=query_key,
        nonce=nonce,
        chain_job_id="0x" + job_id.hex(),
        deadline=deadline,
        # The consumer's signature; a custodial one is made by the chain signer (in the outbox).
        signature="0x" + signature.hex() if isinstance(signature, bytes) else "",
        signed_by_platform=request.signature is None,
        algorithm_id=params["algorithm"] if request.operation == jobs.TEE_OPERATION else None,  # ISSUE-13
    )
    job.record_tx = agent.record_usage(
        key=f"job-record:{job.id}",
        agreement_id=agreement.chain_agreement_id,
        job_id=job_id,
        purpose=request.purpose,
        operation=request.operation,
        params_hash=params_hash,
        privacy_loss=privacy_loss,
        deadline=deadline,
        signature=signature,
    )
    job.save(update_fields=["record_tx"])
    return job
