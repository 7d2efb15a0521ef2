"""ISSUE-13: the TEE terms of an offer in its ODRL document, the metered call maximum, the output
schema's numeric leaves the custodian noises, and the custodian's attestation nonces."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from dataspace.compute.key_broker import DatabaseNonceStore
from dataspace.compute.models import Job
from dataspace.compute.tee_custody import numeric_leaves
from dataspace.policies import odrl
from dataspace.policies.models import Agreement, Offer
from dataspace.policies.services import offer_call_maximum
from enclaves.attestation import AttestationRefused, RefusalCode
from tests.support.datasets import ready_dataset

BASE: dict[str, Any] = {
    "purposes": ["research"],
    "max_calls": 5,
    "price_per_call": 10,
    "duration_seconds": 3600,
    "privacy_budget": 1.0,
    "min_cohort": 10,
}


@pytest.mark.smoke
def test_tee_terms_are_in_the_document_only_when_the_offer_allows_algorithms() -> None:
    he = odrl.Terms(operations=["count"], **BASE)
    document = odrl.policy_document(offer_id=uuid.uuid4(), dataset_id=uuid.uuid4(), provider="0xabc", terms=he)
    assert "redlake:allowSandbox" not in str(document)
    assert odrl.terms_of(document) == he
    tee = odrl.Terms(
        operations=["algorithm"],
        allow_sandbox=True,
        compute_rate=7 * 10**18,
        max_cpu_millis=20_000,
        memory_limit_bytes=2**30,
        wall_seconds=120,
        **BASE,
    )
    document = odrl.policy_document(offer_id=uuid.uuid4(), dataset_id=uuid.uuid4(), provider="0xabc", terms=tee)
    assert odrl.terms_of(document) == tee


@pytest.mark.smoke
def test_a_metered_call_escrows_its_price_and_the_charge_for_its_cpu_maximum() -> None:
    offer = Offer(price_per_call=100, compute_rate=3000, max_cpu_millis=2500)
    assert offer_call_maximum(offer) == 100 + 3000 * 2500 // 1000
    assert offer_call_maximum(Offer(price_per_call=100)) == 100


@pytest.mark.smoke
def test_numeric_leaves_need_bounds_and_a_fixed_structure() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "number", "minimum": 0, "maximum": 2},
            "b": {
                "type": "object",
                "properties": {"c": {"type": "integer", "minimum": -1, "maximum": 1}},
                "required": ["c"],
            },
            "d": {"type": "number"},
            "e": {"type": "number", "minimum": 0, "maximum": 1},
            "f": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}},
            "g": {"type": "string"},
        },
        "required": ["a", "b", "d", "f", "g"],
    }
    leaves = dict(numeric_leaves(schema))
    assert leaves["$.a"] == (0.0, 2.0)
    assert leaves["$.b.c"] == (-1.0, 1.0)
    assert leaves["$.d"] is None  # no bounds
    assert leaves["$.e (not required)"] is None  # an optional number would reveal its absence
    assert leaves["$.f"] is None  # an array's length is not fixed
    assert leaves["$.g"] is None  # not a number


@pytest.mark.django_db
def test_attestation_nonces_are_single_use_and_expire(provider: Any, consumer: Any) -> None:
    dataset = ready_dataset(provider, b"age\n1\n2\n3\n")
    terms = odrl.Terms(operations=["algorithm"], **BASE)
    offer = Offer.objects.create(
        dataset=dataset,
        provider=provider,
        max_calls=5,
        price_per_call=1,
        duration_seconds=60,
        policy=odrl.policy_document(offer_id=dataset.id, dataset_id=dataset.id, provider="0x0", terms=terms),
        policy_hash="0x" + "00" * 32,
    )
    agreement = Agreement.objects.create(offer=offer, consumer=consumer, calls=1, amount=1)
    job = Job.objects.create(
        consumer=consumer,
        agreement=agreement,
        dataset=dataset,
        idempotency_key="k",
        request_digest="0" * 64,
        operation="algorithm",
        purpose="research",
        nonce=1,
        chain_job_id="0x" + "11" * 32,
        deadline=0,
        signature="0x",
    )
    store = DatabaseNonceStore(job.id, ttl=timedelta(minutes=1))
    now = timezone.now()
    nonce = store.issue(now=now)
    store.consume(nonce, now=now)
    with pytest.raises(AttestationRefused) as reused:
        store.consume(nonce, now=now)
    assert reused.value.code == RefusalCode.NONCE_REUSED
    stale = store.issue(now=now)
    with pytest.raises(AttestationRefused) as expired:
        store.consume(stale, now=now + timedelta(minutes=2))
    assert expired.value.code == RefusalCode.NONCE_EXPIRED
    with pytest.raises(AttestationRefused) as unknown:
        store.consume(b"\x00" * 32, now=now)
    assert unknown.value.code == RefusalCode.NONCE_UNKNOWN
    other_job = DatabaseNonceStore(uuid.uuid4())
    with pytest.raises(AttestationRefused) as foreign:
        other_job.consume(store.issue(now=now), now=now)  # a nonce of another job is unknown to this one
    assert foreign.value.code == RefusalCode.NONCE_UNKNOWN
