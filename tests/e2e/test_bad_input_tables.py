"""Bad input, one table per door: each row a hostile or broken request, each answered with a 4xx
carrying a stable error code, and nothing written (every table the door could touch keeps its
row count). Complements test_json_door.py (size and depth of bodies), test_upload_api.py (files)
and test_accounts_api.py (challenge flows), which are not repeated here."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import models
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct
from knox.models import AuthToken
from rest_framework.test import APIClient

from dataspace.accounts.models import Role, User, Wallet, WalletChallenge
from dataspace.accounts.services import wallet_create_custodial
from dataspace.catalog.models import Dataset, Ingest
from dataspace.chain.models import ChainTransaction
from dataspace.compute.models import Job
from dataspace.policies import odrl
from dataspace.policies.models import Agreement, Offer
from tests.support.datasets import ready_dataset
from tests.support.users import client_for, make_user

pytestmark = [pytest.mark.django_db]

WRITTEN: list[type[models.Model]] = [
    Dataset,
    Ingest,
    Offer,
    Agreement,
    Job,
    ChainTransaction,
    Wallet,
    WalletChallenge,
    AuthToken,
]
UINT256_MAX = 2**256 - 1
INJECTION = "x'); DROP TABLE accounts_user; --<script>alert(1)</script>{{7*7}}${7*7}"


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in WRITTEN}


def refused(send: Callable[[], Any], statuses: set[int], code: str) -> dict[str, Any]:
    before = counts()
    response = send()
    assert response.status_code in statuses, (response.status_code, response.content[:400])
    error = response.json()["error"]
    assert error["code"] == code, error
    assert counts() == before, "a refused request wrote rows"
    return dict(error)


class World:
    def __init__(self) -> None:
        self.provider = make_user("prov", Role.PROVIDER)
        self.other_provider = make_user("prov2", Role.PROVIDER)
        self.consumer = make_user("cons", Role.CONSUMER)
        self.other_consumer = make_user("cons2", Role.CONSUMER)
        for user in (self.consumer, self.other_consumer):
            wallet_create_custodial(user=user)
        content = b"age,region\n" + b"".join(b"%d,n\n" % (20 + i) for i in range(30))
        self.dataset = ready_dataset(self.provider, content)
        self.foreign_dataset = ready_dataset(self.other_provider, content)
        terms = odrl.Terms(["research"], ["mean"], 5, 1, 86400, 5.0, 10)
        self.offer = Offer.objects.create(
            dataset=self.dataset,
            provider=self.provider,
            purposes=["research"],
            operations=["mean"],
            max_calls=5,
            price_per_call=1,
            duration_seconds=86400,
            policy=odrl.policy_document(
                offer_id=self.dataset.id, dataset_id=self.dataset.id, provider="0x0", terms=terms
            ),
            policy_hash="0x" + "00" * 32,
            status=Offer.Status.PUBLISHED,
            chain_offer_id=1,
        )
        self.agreement = Agreement.objects.create(
            offer=self.offer,
            consumer=self.consumer,
            calls=5,
            amount=5,
            status=Agreement.Status.ACTIVE,
            chain_agreement_id=1,
            expires_at=timezone.now() + timedelta(days=1),
        )
        self.foreign_agreement = Agreement.objects.create(
            offer=self.offer,
            consumer=self.other_consumer,
            calls=5,
            amount=5,
            status=Agreement.Status.ACTIVE,
            chain_agreement_id=2,
            expires_at=timezone.now() + timedelta(days=1),
        )
        self.provider_api = client_for(self.provider)
        self.consumer_api = client_for(self.consumer)


@pytest.fixture
def world(db: Any) -> World:
    return World()


# --- offer ----------------------------------------------------------------------------------


def offer_body(w: World, **changes: Any) -> dict[str, Any]:
    body = {
        "dataset": str(w.dataset.id),
        "purposes": ["research"],
        "operations": ["mean"],
        "max_calls": 10,
        "price_per_call": 1,
        "duration_days": 30,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


OFFER_ROWS = [
    ("empty", lambda w: {}, {400}, "validation_failed"),
    ("max_calls_zero", lambda w: offer_body(w, max_calls=0), {400}, "validation_failed"),
    ("max_calls_negative", lambda w: offer_body(w, max_calls=-1), {400}, "validation_failed"),
    ("max_calls_uint256_max", lambda w: offer_body(w, max_calls=UINT256_MAX), {400}, "validation_failed"),
    ("price_uint256_max", lambda w: offer_body(w, price_per_call=UINT256_MAX), {400}, "validation_failed"),
    ("price_negative", lambda w: offer_body(w, price_per_call=-1), {400}, "validation_failed"),
    ("duration_nan", lambda w: offer_body(w, duration_days="NaN"), {400}, "validation_failed"),
    ("duration_infinity", lambda w: offer_body(w, duration_days="Infinity"), {400}, "validation_failed"),
    ("duration_zero", lambda w: offer_body(w, duration_days=0), {400}, "validation_failed"),
    ("budget_nan", lambda w: offer_body(w, privacy_budget="NaN"), {400}, "validation_failed"),
    ("budget_negative_infinity", lambda w: offer_body(w, privacy_budget="-Infinity"), {400}, "validation_failed"),
    ("max_calls_wrong_type", lambda w: offer_body(w, max_calls="ten"), {400}, "validation_failed"),
    ("purposes_wrong_type", lambda w: offer_body(w, purposes="research"), {400}, "validation_failed"),
    ("purpose_injection", lambda w: offer_body(w, purposes=[INJECTION]), {400}, "validation_failed"),
    ("operation_injection", lambda w: offer_body(w, operations=[INJECTION]), {400}, "validation_failed"),
    ("unknown_field", lambda w: offer_body(w, provider=str(w.other_provider.pk)), {400}, "validation_failed"),
    ("another_providers_dataset", lambda w: offer_body(w, dataset=str(w.foreign_dataset.id)), {404}, "not_found"),
    ("no_such_dataset", lambda w: offer_body(w, dataset=str(uuid.uuid4())), {404}, "not_found"),
    ("dataset_not_a_uuid", lambda w: offer_body(w, dataset=INJECTION), {400}, "validation_failed"),
]


@pytest.mark.parametrize(("name", "body", "statuses", "code"), OFFER_ROWS, ids=[r[0] for r in OFFER_ROWS])
def test_offer_door_refuses(world: World, name: str, body: Any, statuses: set[int], code: str) -> None:
    refused(lambda: world.provider_api.post("/api/offers/", body(world), format="json"), statuses, code)


# --- agreement ------------------------------------------------------------------------------

AGREEMENT_ROWS = [
    ("empty", lambda w: {}, {400}, "validation_failed"),
    ("calls_zero", lambda w: {"offer": str(w.offer.id), "calls": 0}, {400}, "validation_failed"),
    ("calls_negative", lambda w: {"offer": str(w.offer.id), "calls": -5}, {400}, "validation_failed"),
    ("calls_uint256_max", lambda w: {"offer": str(w.offer.id), "calls": UINT256_MAX}, {400}, "validation_failed"),
    ("calls_nan", lambda w: {"offer": str(w.offer.id), "calls": "NaN"}, {400}, "validation_failed"),
    ("calls_infinity", lambda w: {"offer": str(w.offer.id), "calls": "Infinity"}, {400}, "validation_failed"),
    ("calls_float", lambda w: {"offer": str(w.offer.id), "calls": 1.5}, {400}, "validation_failed"),
    ("offer_injection", lambda w: {"offer": INJECTION, "calls": 1}, {400}, "validation_failed"),
    ("no_such_offer", lambda w: {"offer": str(uuid.uuid4()), "calls": 1}, {404}, "not_found"),
    (
        "calls_and_accept_tx",
        lambda w: {"offer": str(w.offer.id), "calls": 1, "accept_tx": "0x" + "ab" * 32},
        {400},
        "validation_failed",
    ),
    ("accept_tx_garbage", lambda w: {"offer": str(w.offer.id), "accept_tx": "0xzz"}, {400}, "validation_failed"),
    (
        "unknown_field",
        lambda w: {"offer": str(w.offer.id), "calls": 1, "consumer": w.other_consumer.pk},
        {400},
        "validation_failed",
    ),
]


@pytest.mark.parametrize(("name", "body", "statuses", "code"), AGREEMENT_ROWS, ids=[r[0] for r in AGREEMENT_ROWS])
def test_agreement_door_refuses(world: World, name: str, body: Any, statuses: set[int], code: str) -> None:
    refused(lambda: world.consumer_api.post("/api/agreements/", body(world), format="json"), statuses, code)


# --- job ------------------------------------------------------------------------------------


def job_body(w: World, **changes: Any) -> dict[str, Any]:
    body = {"agreement": str(w.agreement.id), "operation": "mean", "params": {"column": "age"}, "purpose": "research"}
    body.update(changes)
    return body


JOB_ROWS = [
    ("empty", lambda w: {}, {400}, "validation_failed"),
    ("epsilon_nan", lambda w: job_body(w, epsilon="NaN"), {400}, "validation_failed"),
    ("epsilon_infinity", lambda w: job_body(w, epsilon="Infinity"), {400}, "validation_failed"),
    ("epsilon_negative", lambda w: job_body(w, epsilon=-1), {400}, "validation_failed"),
    ("nonce_zero", lambda w: job_body(w, nonce=0), {400}, "validation_failed"),
    ("nonce_uint256_max_plus_one", lambda w: job_body(w, nonce=UINT256_MAX + 1), {400}, "validation_failed"),
    ("params_wrong_type", lambda w: job_body(w, params=[1, 2]), {400}, "validation_failed"),
    ("operation_injection", lambda w: job_body(w, operation=INJECTION), {400}, "validation_failed"),
    ("purpose_not_allowed", lambda w: job_body(w, purpose=INJECTION[:64]), {403}, "purpose_not_allowed"),
    ("another_consumers_agreement", lambda w: job_body(w, agreement=str(w.foreign_agreement.id)), {404}, "not_found"),
    ("unknown_field", lambda w: job_body(w, consumer=w.other_consumer.pk), {400}, "validation_failed"),
    ("signature_garbage", lambda w: job_body(w, signature="0x" + "zz" * 65), {400}, "validation_failed"),
]


@pytest.mark.parametrize(("name", "body", "statuses", "code"), JOB_ROWS, ids=[r[0] for r in JOB_ROWS])
def test_job_door_refuses(world: World, name: str, body: Any, statuses: set[int], code: str) -> None:
    refused(lambda: world.consumer_api.post("/api/jobs/", body(world), format="json"), statuses, code)


def test_job_on_an_expired_agreement_is_refused(world: World) -> None:
    Agreement.objects.filter(pk=world.agreement.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused(lambda: world.consumer_api.post("/api/jobs/", job_body(world), format="json"), {409}, "agreement_expired")


# --- token ----------------------------------------------------------------------------------

TOKEN_ROWS = [
    ("empty", {}, {400}, "validation_failed"),
    ("wrong_type", {"username": ["prov"], "password": {"a": 1}}, {400}, "validation_failed"),
    ("injection_username", {"username": INJECTION, "password": "x"}, {400, 401}, "authentication_failed"),
    (
        "unknown_field",
        {"username": "prov", "password": "pw-prov-0123456789", "is_staff": True},
        {400},
        "validation_failed",
    ),
    ("wrong_password", {"username": "prov", "password": "nope"}, {400, 401}, "authentication_failed"),
]


@pytest.mark.parametrize(("name", "body", "statuses", "code"), TOKEN_ROWS, ids=[r[0] for r in TOKEN_ROWS])
def test_token_door_refuses(world: World, name: str, body: Any, statuses: set[int], code: str) -> None:
    refused(lambda: APIClient().post("/api/auth/token/", body, format="json"), statuses, code)


def test_token_body_in_the_wrong_encoding_is_refused(world: World) -> None:
    body = '{"username": "prov", "password": "pw"}'.encode("utf-16")
    refused(
        lambda: APIClient().generic("POST", "/api/auth/token/", body, content_type="application/json"),
        {400},
        "validation_failed",
    )


# --- wallet signature -----------------------------------------------------------------------


def signed_registration(w: World, *, user: User | None = None, expired: bool = False) -> dict[str, Any]:
    owner = client_for(user or w.consumer)
    challenge = owner.post("/api/me/wallet/challenge/").json()
    if expired:
        WalletChallenge.objects.filter(nonce=challenge["nonce"]).update(expires_at=timezone.now() - timedelta(1))
    account = Account.create()
    signed = account.sign_message(encode_defunct(text=challenge["message"]))
    return {"nonce": challenge["nonce"], "address": account.address, "signature": "0x" + signed.signature.hex()}


WALLET_ROWS = [
    ("empty", lambda w: {}, {400}, "validation_failed"),
    ("signature_wrong_length", lambda w: {**signed_registration(w), "signature": "0x1234"}, {400}, "validation_failed"),
    (
        "signature_of_zeros",
        lambda w: {**signed_registration(w), "signature": "0x" + "00" * 65},
        {400},
        "signature_invalid",
    ),
    (
        "signature_by_another_key",
        lambda w: {**signed_registration(w), "address": Account.create().address},
        {400},
        "signature_invalid",
    ),
    ("address_injection", lambda w: {**signed_registration(w), "address": INJECTION}, {400}, "validation_failed"),
    ("nonce_wrong_type", lambda w: {**signed_registration(w), "nonce": {"$ne": None}}, {400}, "validation_failed"),
    ("expired_challenge", lambda w: signed_registration(w, expired=True), {400}, "challenge_invalid"),
    ("another_users_challenge", lambda w: signed_registration(w, user=w.other_consumer), {400}, "challenge_invalid"),
    ("unknown_field", lambda w: {**signed_registration(w), "user": w.other_consumer.pk}, {400}, "validation_failed"),
]


@pytest.mark.parametrize(("name", "body", "statuses", "code"), WALLET_ROWS, ids=[r[0] for r in WALLET_ROWS])
def test_wallet_signature_door_refuses(world: World, name: str, body: Any, statuses: set[int], code: str) -> None:
    Wallet.objects.filter(user=world.consumer).delete()  # an own address may be linked only without one
    payload = body(world)  # the challenge is written before the door is tried
    refused(lambda: world.consumer_api.post("/api/me/wallet/register/", payload, format="json"), statuses, code)


def test_a_duplicate_wallet_registration_is_refused(world: World) -> None:
    Wallet.objects.filter(user=world.consumer).delete()
    payload = signed_registration(world)
    assert world.consumer_api.post("/api/me/wallet/register/", payload, format="json").status_code == 201
    refused(
        lambda: world.consumer_api.post("/api/me/wallet/register/", payload, format="json"),
        {400, 409},
        "wallet_exists",
    )


# --- upload ---------------------------------------------------------------------------------


def upload_request(client: APIClient, content: bytes, *, name: str = "d.csv", **fields: Any) -> Any:
    handle = io.BytesIO(content)
    handle.name = name
    return client.post("/api/datasets/", {"file": handle, "title": "t", **fields}, format="multipart")


UPLOAD_ROWS = [
    ("empty_file", lambda c: upload_request(c, b""), {400}, "file_empty"),
    ("utf16_file", lambda c: upload_request(c, "a,b\n1,2\n".encode("utf-16")), {400}, "binary_content"),
    ("binary_file", lambda c: upload_request(c, bytes(range(256)) * 4), {400}, "binary_content"),
    ("injection_title", lambda c: upload_request(c, b"a\n1\n", title=INJECTION * 10), {400}, "validation_failed"),
    ("injection_column_name", lambda c: upload_request(c, INJECTION.encode() + b"\n1\n"), {400}, "invalid_column_name"),
]


@pytest.mark.parametrize(("name", "send", "statuses", "code"), UPLOAD_ROWS, ids=[r[0] for r in UPLOAD_ROWS])
def test_upload_door_refuses(world: World, name: str, send: Any, statuses: set[int], code: str) -> None:
    refused(lambda: send(world.provider_api), statuses, code)


# --- policy document ------------------------------------------------------------------------


def policy_of(w: World) -> dict[str, Any]:
    return dict(w.offer.policy)


POLICY_ROWS = [
    ("empty", lambda d: {}),
    ("no_permission", lambda d: {**d, "permission": []}),
    ("constraint_wrong_type", lambda d: {**d, "permission": [{**d["permission"][0], "constraint": "all"}]}),
    ("count_nan", lambda d: _with_constraint(d, "count", "NaN")),
    ("count_uint256_max", lambda d: _with_constraint(d, "count", UINT256_MAX)),
    ("count_negative", lambda d: _with_constraint(d, "count", -1)),
    ("budget_infinity", lambda d: _with_constraint(d, "redlake:privacyBudget", "Infinity")),
    ("purposes_not_a_list", lambda d: _with_constraint(d, "purpose", INJECTION)),
]


def _with_constraint(document: dict[str, Any], operand: str, value: Any) -> dict[str, Any]:
    permission = document["permission"][0]
    constraints = [{**c, "rightOperand": value} if c["leftOperand"] == operand else c for c in permission["constraint"]]
    return {**document, "permission": [{**permission, "constraint": constraints}]}


@pytest.mark.parametrize(("name", "mutate"), POLICY_ROWS, ids=[r[0] for r in POLICY_ROWS])
def test_policy_document_door_refuses(world: World, name: str, mutate: Any) -> None:
    """A policy document that is not one Redlake wrote (a stored offer tampered with) stops every
    job on it with ``policy_invalid``, before anything is reserved."""
    Offer.objects.filter(pk=world.offer.pk).update(policy=mutate(policy_of(world)))
    refused(lambda: world.consumer_api.post("/api/jobs/", job_body(world), format="json"), {409}, "policy_invalid")
