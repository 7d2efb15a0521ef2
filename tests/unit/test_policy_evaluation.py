"""The one policy evaluation: the ODRL document is what is hashed on chain and what decides."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dataspace.errors import DomainError, ErrorCode
from dataspace.policies import odrl

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
TERMS = odrl.Terms(
    purposes=["research", "public-health"],
    operations=["mean", "count"],
    max_calls=10,
    price_per_call=5 * 10**18,
    duration_seconds=86400,
    privacy_budget=2.0,
    min_cohort=10,
)


def document(terms: odrl.Terms = TERMS) -> dict[str, object]:
    return odrl.policy_document(offer_id=uuid.uuid4(), dataset_id=uuid.uuid4(), provider="0xabc", terms=terms)


def state(**changes: object) -> odrl.AgreementState:
    fields: dict[str, object] = {
        "calls_bought": 10,
        "calls_reserved": 0,
        "expires_at": NOW + timedelta(days=1),
    }
    fields.update(changes)
    return odrl.AgreementState(**fields)  # type: ignore[arg-type]


def request(**changes: object) -> odrl.UsageRequest:
    fields: dict[str, object] = {"purpose": "research", "operation": "mean", "epsilon": 0.5, "now": NOW}
    fields.update(changes)
    return odrl.UsageRequest(**fields)  # type: ignore[arg-type]


def test_terms_round_trip_through_the_document() -> None:
    assert odrl.terms_of(document()) == odrl.Terms(
        purposes=sorted(TERMS.purposes),
        operations=sorted(TERMS.operations),
        max_calls=10,
        price_per_call=5 * 10**18,
        duration_seconds=86400,
        privacy_budget=2.0,
        min_cohort=10,
        non_personal=False,
    )


def test_the_hash_is_canonical_and_binds_every_term() -> None:
    doc = document()
    assert odrl.policy_hash(doc) == odrl.policy_hash(dict(reversed(list(doc.items()))))
    changed = document(odrl.Terms(**{**TERMS.__dict__, "max_calls": 11}))
    changed["uid"], changed["target"] = doc["uid"], doc["target"]
    assert odrl.policy_hash(changed) != odrl.policy_hash(doc)


def test_a_request_within_the_terms_passes() -> None:
    odrl.evaluate(document(), state(), request())


@pytest.mark.parametrize(
    ("agreement", "usage", "code"),
    [
        ({}, {"purpose": "marketing"}, ErrorCode.PURPOSE_NOT_ALLOWED),
        ({}, {"operation": "linear_regression"}, ErrorCode.OPERATION_NOT_ALLOWED),
        ({"expires_at": NOW}, {}, ErrorCode.AGREEMENT_EXPIRED),
        ({"calls_reserved": 10}, {}, ErrorCode.CALLS_EXHAUSTED),
        ({}, {"epsilon": 2.5}, ErrorCode.BUDGET_EXHAUSTED),  # more than one consumer's share
        ({}, {"epsilon": 0.0}, ErrorCode.EPSILON_INVALID),  # a personal dataset answers with noise
        ({}, {"epsilon": float("nan")}, ErrorCode.EPSILON_INVALID),
        ({}, {"epsilon": -1.0}, ErrorCode.EPSILON_INVALID),
    ],
)
def test_each_broken_term_is_named(agreement: dict[str, object], usage: dict[str, object], code: ErrorCode) -> None:
    with pytest.raises(DomainError) as error:
        odrl.evaluate(document(), state(**agreement), request(**usage))
    assert error.value.code == code


def test_a_non_personal_dataset_takes_no_epsilon() -> None:
    free = document(odrl.Terms(**{**TERMS.__dict__, "privacy_budget": 0.0, "non_personal": True}))
    odrl.evaluate(free, state(), request(epsilon=0.0))
    with pytest.raises(DomainError) as error:
        odrl.evaluate(free, state(), request(epsilon=0.1))
    assert error.value.code == ErrorCode.EPSILON_INVALID
