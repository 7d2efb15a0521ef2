"""Account services: users, API tokens and wallets."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_keys.exceptions import BadSignature
from eth_utils.address import is_checksum_address, to_checksum_address
from knox.models import AuthToken

from dataspace.accounts.models import Role, User, Wallet, WalletChallenge
from dataspace.errors import DomainError, ErrorCode
from dataspace.role_checks import require_role
from dataspace.roles import Role as ProcessRole
from dataspace.vault import services as vault

CHALLENGE_TTL = timedelta(minutes=10)


def user_create(*, username: str, password: str, email: str = "", roles: Iterable[Role] = ()) -> User:
    roles = set(roles)
    user = User(
        username=username,
        email=email,
        is_provider=Role.PROVIDER in roles,
        is_consumer=Role.CONSUMER in roles,
        is_auditor=Role.AUDITOR in roles,
        is_staff=Role.OPERATOR in roles,
    )
    user.set_password(password)
    user.save()
    return user


def api_token_issue(*, user: User, ttl: timedelta | None = None) -> tuple[AuthToken, str]:
    """A new API token; the plaintext is returned once and only its hash is stored (knox). The
    user's expired tokens are deleted here rather than on every request (``authentication``)."""
    AuthToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
    instance, token = AuthToken.objects.create(user=user, expiry=ttl)
    return instance, token


def api_token_revoke(*, user: User, token_key: str) -> bool:
    deleted: int = AuthToken.objects.filter(user=user, token_key=token_key).delete()[0]
    return deleted > 0


@transaction.atomic
def wallet_create_custodial(*, user: User) -> Wallet:
    """Generates a key for the user; the private key is stored only sealed by the vault."""
    if Wallet.objects.filter(user=user).exists():
        raise DomainError("This account already has a wallet.", code=ErrorCode.WALLET_EXISTS)
    account = Account.create()
    data_key, sealed = vault.secret_seal(plaintext=bytes(account.key), purpose="wallet")
    return Wallet.objects.create(
        user=user,
        kind=Wallet.Kind.CUSTODIAL,
        address=account.address,
        data_key=data_key,
        sealed_private_key=sealed,
    )


def wallet_private_key(*, wallet: Wallet) -> bytes:
    """The custodial key, for signing on the user's behalf. Never log or return it. Only the
    chain signer unseals it (ISSUE-12 custody: every other role is refused here)."""
    require_role(ProcessRole.CHAIN, purpose="Unsealing a custodial wallet's key")
    if wallet.kind != Wallet.Kind.CUSTODIAL or wallet.data_key is None or wallet.sealed_private_key is None:
        raise DomainError("Only custodial wallets hold a key on the platform.")
    return vault.secret_open(data_key=wallet.data_key, sealed=bytes(wallet.sealed_private_key))


def custodial_account(*, address: str) -> LocalAccount:
    """The signing account of the custodial wallet at ``address`` (for the chain outbox)."""
    wallet = Wallet.objects.filter(address__iexact=address, kind=Wallet.Kind.CUSTODIAL).first()
    if wallet is None:
        raise DomainError(f"No custodial wallet holds the address {address}.", code=ErrorCode.NOT_FOUND)
    account: LocalAccount = Account.from_key(wallet_private_key(wallet=wallet))
    return account


def wallet_challenge_issue(*, user: User) -> WalletChallenge:
    nonce = secrets.token_hex(16)
    expires_at = timezone.now() + CHALLENGE_TTL
    message = (
        "Redlake: I control this address and link it to my account.\n"
        f"Account: {user.username}\nNonce: {nonce}\nExpires: {expires_at.isoformat()}"
    )
    return WalletChallenge.objects.create(user=user, nonce=nonce, message=message, expires_at=expires_at)


@transaction.atomic
def wallet_register_external(*, user: User, nonce: str, address: str, signature: str) -> Wallet:
    """Links an address the user controls, proven by an EIP-191 signature over a fresh,
    single-use challenge (replaying a used or another user's challenge fails)."""
    if Wallet.objects.filter(user=user).exists():
        raise DomainError("This account already has a wallet.", code=ErrorCode.WALLET_EXISTS)
    challenge = (
        WalletChallenge.objects.select_for_update()
        .filter(user=user, nonce=nonce, used_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )
    if challenge is None:
        raise DomainError("The challenge is unknown, expired or already used.", code=ErrorCode.CHALLENGE_INVALID)
    if not (is_checksum_address(address) or address == address.lower()):
        raise DomainError(
            "The address is not a valid (checksummed) Ethereum address.", code=ErrorCode.VALIDATION_FAILED
        )
    try:
        claimed = to_checksum_address(address)
        recovered = Account.recover_message(encode_defunct(text=challenge.message), signature=signature)
    except (ValueError, TypeError, BadSignature):  # ISSUE-14: BadSignature (r, s out of range) was a 500
        raise DomainError("The signature is malformed.", code=ErrorCode.SIGNATURE_INVALID) from None
    if recovered != claimed:
        raise DomainError("The signature was not made by that address.", code=ErrorCode.SIGNATURE_INVALID)
    challenge.used_at = timezone.now()
    challenge.save(update_fields=["used_at"])
    try:
        with transaction.atomic():
            return Wallet.objects.create(user=user, kind=Wallet.Kind.EXTERNAL, address=claimed)
    except IntegrityError:
        raise DomainError("That address is linked to another account.", code=ErrorCode.CONFLICT) from None
