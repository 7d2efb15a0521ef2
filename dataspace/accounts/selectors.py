"""Account reads for other apps."""

from __future__ import annotations

from dataspace.accounts.models import User, Wallet


def wallet_get(*, user: User) -> Wallet | None:
    return Wallet.objects.filter(user=user).select_related("data_key").first()
