"""Tokens (hashed, expiring, revocable) and wallets (custodial or proven by signature)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct
from knox.models import AuthToken
from rest_framework.test import APIClient

from dataspace.accounts.models import User, Wallet, WalletChallenge
from dataspace.accounts.services import api_token_issue, wallet_private_key

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def token_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_password_login_issues_a_hashed_token(consumer: User) -> None:
    response = APIClient().post("/api/auth/token/", {"username": "cons", "password": "pw-cons-0123456789"})
    assert response.status_code == 201
    token = response.json()["token"]
    assert not AuthToken.objects.filter(digest__contains=token).exists()  # only the digest is stored
    assert token_client(token).get("/api/me/").json()["roles"] == ["consumer"]


def test_wrong_password_is_401(consumer: User) -> None:
    response = APIClient().post("/api/auth/token/", {"username": "cons", "password": "nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_revoked_token_is_401(consumer: User) -> None:
    instance, token = api_token_issue(user=consumer)
    client = token_client(token)
    assert client.delete(f"/api/auth/tokens/{instance.token_key}/").status_code == 204
    response = client.get("/api/me/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_expired_token_is_401(consumer: User) -> None:
    instance, token = api_token_issue(user=consumer, ttl=timedelta(hours=1))
    AuthToken.objects.filter(pk=instance.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    assert token_client(token).get("/api/me/").status_code == 401


def test_an_expired_token_is_deleted_when_used(consumer: User) -> None:
    instance, token = api_token_issue(user=consumer, ttl=timedelta(hours=1))
    AuthToken.objects.filter(pk=instance.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    response = token_client(token).get("/api/me/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert not AuthToken.objects.filter(pk=instance.pk).exists()


def test_issuing_a_token_deletes_the_users_expired_ones(consumer: User, provider: User) -> None:
    # Requests check only their own token's expiry; the sweep of the rest happens here.
    expired, _ = api_token_issue(user=consumer, ttl=timedelta(hours=1))
    _live, live_token = api_token_issue(user=consumer, ttl=timedelta(hours=1))
    theirs, _ = api_token_issue(user=provider, ttl=timedelta(hours=1))
    AuthToken.objects.filter(pk__in=[expired.pk, theirs.pk]).update(expiry=timezone.now() - timedelta(seconds=1))
    api_token_issue(user=consumer)
    assert not AuthToken.objects.filter(pk=expired.pk).exists()
    assert AuthToken.objects.filter(pk=theirs.pk).exists()  # another user's token is theirs to sweep
    assert token_client(live_token).get("/api/me/").status_code == 200


def test_a_token_of_an_inactive_user_is_401(consumer: User) -> None:
    _, token = api_token_issue(user=consumer)
    User.objects.filter(pk=consumer.pk).update(is_active=False)
    response = token_client(token).get("/api/me/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize(
    "header",
    ["Token ", "Token a b", "Token \xff\xfe", "Token " + "0" * 64, "Token 0123456789abcdef", "Token short"],
)
def test_a_malformed_or_unknown_token_is_401(consumer: User, header: str) -> None:
    api_token_issue(user=consumer)
    response = APIClient().get("/api/me/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_a_token_is_matched_by_its_digest_not_its_key(consumer: User, provider: User) -> None:
    # Two tokens may share the 15-character key prefix; only the full token's digest decides.
    _instance, token = api_token_issue(user=consumer)
    forged = token[:15] + ("0" if token[15] != "0" else "1") + token[16:]
    assert APIClient().get("/api/me/", HTTP_AUTHORIZATION=f"Token {forged}").status_code == 401
    assert token_client(token).get("/api/me/").json()["username"] == consumer.username


def test_cannot_revoke_another_users_token(consumer: User, provider: User) -> None:
    theirs, _ = api_token_issue(user=provider)
    _, mine = api_token_issue(user=consumer)
    assert token_client(mine).delete(f"/api/auth/tokens/{theirs.token_key}/").status_code == 404
    assert AuthToken.objects.filter(pk=theirs.pk).exists()


def test_custodial_wallet_key_is_sealed(consumer: User) -> None:
    _, token = api_token_issue(user=consumer)
    response = token_client(token).post("/api/me/wallet/custodial/")
    assert response.status_code == 201
    wallet = Wallet.objects.get(user=consumer)
    key = wallet_private_key(wallet=wallet)
    assert Account.from_key(key).address == response.json()["address"]
    assert key not in bytes(wallet.sealed_private_key or b"")
    assert token_client(token).post("/api/me/wallet/custodial/").status_code == 409


def _register(client: APIClient, account: object, *, signer: object | None = None) -> tuple[int, dict[str, object]]:
    challenge = client.post("/api/me/wallet/challenge/").json()
    signed = (signer or account).sign_message(encode_defunct(text=challenge["message"]))  # type: ignore[attr-defined]
    response = client.post(
        "/api/me/wallet/register/",
        {"nonce": challenge["nonce"], "address": account.address, "signature": signed.signature.hex()},  # type: ignore[attr-defined]
    )
    return response.status_code, {**response.json(), "nonce": challenge["nonce"], "sig": signed.signature.hex()}


def test_external_wallet_needs_a_signature_from_that_address(consumer: User) -> None:
    _, token = api_token_issue(user=consumer)
    client = token_client(token)
    account, impostor = Account.create(), Account.create()
    status, body = _register(client, account, signer=impostor)
    assert status == 400
    assert body["error"]["code"] == "signature_invalid"  # type: ignore[index]
    status, body = _register(client, account)
    assert status == 201
    assert body["address"] == account.address
    # Replaying the used challenge and signature is refused.
    replay = client.post(
        "/api/me/wallet/register/", {"nonce": body["nonce"], "address": account.address, "signature": body["sig"]}
    )
    assert replay.status_code in {400, 409}


def test_expired_challenge_is_refused(consumer: User) -> None:
    _, token = api_token_issue(user=consumer)
    client = token_client(token)
    account = Account.create()
    challenge = client.post("/api/me/wallet/challenge/").json()
    WalletChallenge.objects.filter(nonce=challenge["nonce"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    signed = account.sign_message(encode_defunct(text=challenge["message"]))
    response = client.post(
        "/api/me/wallet/register/",
        {"nonce": challenge["nonce"], "address": account.address, "signature": signed.signature.hex()},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "challenge_invalid"


def test_another_users_challenge_is_refused(consumer: User, provider: User) -> None:
    _, theirs = api_token_issue(user=provider)
    _, mine = api_token_issue(user=consumer)
    challenge = token_client(theirs).post("/api/me/wallet/challenge/").json()
    account = Account.create()
    signed = account.sign_message(encode_defunct(text=challenge["message"]))
    response = token_client(mine).post(
        "/api/me/wallet/register/",
        {"nonce": challenge["nonce"], "address": account.address, "signature": signed.signature.hex()},
    )
    assert response.json()["error"]["code"] == "challenge_invalid"
