"""The usage policy as one ODRL document, and the one evaluation of it off chain.

The document is what the provider publishes and what the chain pins (its SHA-256 is the offer's
``policyHash``). ``evaluate`` reads the terms back from the document itself, so the decision is
made on exactly what was hashed; the contract then enforces the part a chain can (purpose,
operation, calls, expiry, budget, price).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dataspace.canonical import sha256_canonical
from dataspace.errors import DomainError, ErrorCode

ODRL_CONTEXT = ["http://www.w3.org/ns/odrl.jsonld", {"redlake": "urn:redlake:terms:"}]


@dataclass(frozen=True)
class Terms:
    purposes: list[str]
    operations: list[str]
    max_calls: int
    price_per_call: int
    duration_seconds: int
    # The most epsilon one consumer may spend on the dataset through this offer's agreements
    # (the dataset's own total binds all consumers together); 0 for a non-personal dataset.
    privacy_budget: float
    min_cohort: int
    non_personal: bool = False
    # ISSUE-13: terms of TEE execution (operation ``algorithm``): sandbox (SIMULATED) evidence
    # accepted or not, the metered compute charge (token base units per CPU-second, up to
    # max_cpu_millis per call; 0 = not metered) and the sandbox's memory and wall-clock limits.
    allow_sandbox: bool = False
    compute_rate: int = 0
    max_cpu_millis: int = 0
    memory_limit_bytes: int = 512 * 1024 * 1024
    wall_seconds: int = 60


TEE_OPERATION = "algorithm"


def policy_document(*, offer_id: uuid.UUID, dataset_id: uuid.UUID, provider: str, terms: Terms) -> dict[str, Any]:
    constraints = [
        {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": sorted(terms.purposes)},
        {"leftOperand": "redlake:operation", "operator": "isAnyOf", "rightOperand": sorted(terms.operations)},
        {"leftOperand": "count", "operator": "lteq", "rightOperand": terms.max_calls},
        {"leftOperand": "elapsedTime", "operator": "lteq", "rightOperand": f"PT{terms.duration_seconds}S"},
        {"leftOperand": "redlake:privacyBudget", "operator": "lteq", "rightOperand": terms.privacy_budget},
        {"leftOperand": "redlake:minCohort", "operator": "gteq", "rightOperand": terms.min_cohort},
        {"leftOperand": "redlake:nonPersonal", "operator": "eq", "rightOperand": terms.non_personal},
    ]
    if TEE_OPERATION in terms.operations:  # ISSUE-13: only offers that allow TEE execution state its terms
        constraints += [
            {"leftOperand": "redlake:allowSandbox", "operator": "eq", "rightOperand": terms.allow_sandbox},
            {"leftOperand": "redlake:computeRate", "operator": "eq", "rightOperand": str(terms.compute_rate)},
            {"leftOperand": "redlake:maxCpuMillis", "operator": "lteq", "rightOperand": terms.max_cpu_millis},
            {"leftOperand": "redlake:memoryLimitBytes", "operator": "lteq", "rightOperand": terms.memory_limit_bytes},
            {"leftOperand": "redlake:wallSeconds", "operator": "lteq", "rightOperand": terms.wall_seconds},
        ]
    return {
        "@context": ODRL_CONTEXT,
        "@type": "Offer",
        "uid": f"urn:redlake:offer:{offer_id}",
        "assigner": provider,
        "target": f"urn:redlake:dataset:{dataset_id}",
        "permission": [
            {
                "action": "use",
                "constraint": constraints,
                "duty": [
                    {
                        "action": "compensate",
                        "constraint": [
                            {"leftOperand": "payAmount", "operator": "eq", "rightOperand": str(terms.price_per_call)}
                        ],
                    }
                ],
            }
        ],
    }


def policy_hash(document: dict[str, Any]) -> bytes:
    """The offer's ``policyHash`` on chain: SHA-256 of the document's canonical JSON."""
    return sha256_canonical(document)


def terms_of(document: dict[str, Any]) -> Terms:
    permission = document["permission"][0]
    found = {c["leftOperand"]: c["rightOperand"] for c in permission["constraint"]}
    price = permission["duty"][0]["constraint"][0]["rightOperand"]
    return Terms(
        purposes=list(found["purpose"]),
        operations=list(found["redlake:operation"]),
        max_calls=int(found["count"]),
        price_per_call=int(price),
        duration_seconds=int(str(found["elapsedTime"]).removeprefix("PT").removesuffix("S")),
        privacy_budget=float(found["redlake:privacyBudget"]),
        min_cohort=int(found["redlake:minCohort"]),
        # Policies published before datasets declared it are personal.
        non_personal=bool(found.get("redlake:nonPersonal", False)),
        allow_sandbox=bool(found.get("redlake:allowSandbox", False)),
        compute_rate=int(found.get("redlake:computeRate", 0)),
        max_cpu_millis=int(found.get("redlake:maxCpuMillis", 0)),
        memory_limit_bytes=int(found.get("redlake:memoryLimitBytes", Terms.memory_limit_bytes)),
        wall_seconds=int(found.get("redlake:wallSeconds", Terms.wall_seconds)),
    )


@dataclass(frozen=True)
class UsageRequest:
    purpose: str
    operation: str
    epsilon: float
    now: datetime


@dataclass(frozen=True)
class AgreementState:
    calls_bought: int
    calls_reserved: int
    expires_at: datetime


def evaluate(document: dict[str, Any], state: AgreementState, request: UsageRequest) -> None:
    """Raises a ``DomainError`` naming the first term the request breaks; returns if it fits."""
    terms = terms_of(document)
    if request.purpose not in terms.purposes:
        raise DomainError(
            f"The purpose {request.purpose!r} is not allowed by this agreement; allowed: {', '.join(terms.purposes)}.",
            code=ErrorCode.PURPOSE_NOT_ALLOWED,
        )
    if request.operation not in terms.operations:
        raise DomainError(
            f"The operation {request.operation!r} is not in this offer; allowed: {', '.join(terms.operations)}.",
            code=ErrorCode.OPERATION_NOT_ALLOWED,
        )
    if request.now >= state.expires_at:
        raise DomainError(f"The agreement expired at {state.expires_at.isoformat()}.", code=ErrorCode.AGREEMENT_EXPIRED)
    if state.calls_reserved >= state.calls_bought:
        raise DomainError(
            f"All {state.calls_bought} calls of this agreement are used or in flight.", code=ErrorCode.CALLS_EXHAUSTED
        )
    check_epsilon(terms, request.epsilon)


def check_epsilon(terms: Terms, epsilon: float) -> None:
    """A personal dataset answers only with noise (epsilon above zero, at most the consumer's
    share); a non-personal one without (epsilon 0). The budgets themselves are the privacy
    ledger's to check: they span every agreement on the dataset."""
    if not math.isfinite(epsilon) or epsilon < 0:
        raise DomainError("Epsilon must be a finite number, at least 0.", code=ErrorCode.EPSILON_INVALID)
    if terms.non_personal:
        if epsilon != 0:
            raise DomainError(
                "The dataset is declared non-personal: answers carry no noise; send epsilon 0.",
                code=ErrorCode.EPSILON_INVALID,
            )
        return
    if epsilon <= 0:
        raise DomainError(
            "The dataset is personal: every answer carries noise, so epsilon must be greater than 0.",
            code=ErrorCode.EPSILON_INVALID,
        )
    if epsilon > terms.privacy_budget:
        raise DomainError(
            f"Epsilon {epsilon:g} exceeds this offer's share of {terms.privacy_budget:g} per consumer.",
            code=ErrorCode.BUDGET_EXHAUSTED,
            details={"scope": "consumer"},
        )
