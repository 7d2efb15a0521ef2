"""Account reads for other apps: wallets are looked up here and nowhere else."""

from __future__ import annotations

from dataspace.accounts.models import User, Wallet
from dataspace.errors import DomainError, ErrorCode


def wallet_get(*, user: User) -> Wallet | None:
    # ISSUE-12 custody: no join to the data key: its wrapped key is not the web tier's to read
    # (dataspace.db_grants), and the chain signer, which unseals it, loads it on its own.
    return Wallet.objects.filter(user=user).first()


def wallet_custodial_address(*, user: User, action: str) -> str:
    """The address of the user's custodial wallet, which the platform signs ``action`` with; a
    ``wallet_required`` error when the user has none (or holds their own key)."""
    wallet = wallet_get(user=user)
    if wallet is None or wallet.kind != Wallet.Kind.CUSTODIAL:
        raise DomainError(
            f"To {action} through the platform the account needs a custodial wallet (POST /api/me/wallet/custodial/).",
            code=ErrorCode.WALLET_REQUIRED,
        )
    return wallet.address


# ISSUE-12: a dataset's chain id carries its provider's address, so readers need it by user id.
def wallet_address(*, user_id: int) -> str:
    """The user's on-chain address (custodial or their own); ``wallet_required`` when none."""
    address = Wallet.objects.filter(user_id=user_id).values_list("address", flat=True).first()
    if address is None:
        raise DomainError("The account has no wallet, so it has nothing on chain.", code=ErrorCode.WALLET_REQUIRED)
    return address
