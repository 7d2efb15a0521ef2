"""API token authentication: knox's tokens, checked with one plain query per request.

knox's own check reads every token of the user on every request, to delete the expired ones, and
builds its lookup through the ORM's query compiler: together most of a catalogue read's time
(bench/load.py). Here one prepared, hand-written query fetches the presented key's tokens with
their users; a request checks only its own token's expiry, and a user's expired tokens are deleted
when a new one is issued (``api_token_issue``), which is where they accumulate. Tokens, digests,
expiry and the inactive-user refusal are knox's, unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.dateparse import parse_datetime
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS
from knox.signals import token_expired
from rest_framework import exceptions

from dataspace.accounts.models import User


def _token_sql() -> str:
    users, tokens = User._meta.db_table, AuthToken._meta.db_table
    # From model metadata only; the key is a bound parameter.
    return (
        f"SELECT u.*, t.digest AS knox_digest, t.expiry AS knox_expiry, t.created AS knox_created "  # noqa: S608
        f"FROM {users} u JOIN {tokens} t ON t.user_id = u.id WHERE t.token_key = %s"
    )


_TOKEN_SQL = _token_sql()
_INVALID = "Invalid token."


def _aware(value: datetime | str | None) -> datetime | None:
    """A token column read raw, as the ORM would have converted it: SQLite hands back a naive
    datetime (stored in UTC) or text, PostgreSQL an aware datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


class TokenAuthentication(KnoxTokenAuthentication):  # type: ignore[misc]  # knox is untyped
    def authenticate_credentials(self, token: bytes) -> tuple[User, AuthToken]:
        try:
            presented = token.decode("utf-8")
            digest = hash_token(presented)
        except (UnicodeDecodeError, TypeError, ValueError):
            raise exceptions.AuthenticationFailed(_INVALID) from None
        key = presented[: CONSTANTS.TOKEN_KEY_LENGTH]
        for user in User.objects.raw(_TOKEN_SQL, [key]):
            row: Any = user
            if not constant_time_compare(digest, row.knox_digest):
                continue
            expiry = _aware(row.knox_expiry)
            if expiry is not None and expiry < timezone.now():
                AuthToken.objects.filter(digest=row.knox_digest).delete()
                token_expired.send(sender=self.__class__, username=user.get_username(), source="auth_token")
                break
            if not user.is_active:
                raise exceptions.AuthenticationFailed("User inactive or deleted.")
            auth_token = AuthToken(
                digest=row.knox_digest, token_key=key, user=user, expiry=expiry, created=_aware(row.knox_created)
            )
            auth_token._state.adding, auth_token._state.db = False, user._state.db
            return user, auth_token
        raise exceptions.AuthenticationFailed(_INVALID)


class TokenScheme(KnoxTokenScheme):  # type: ignore[no-untyped-call]  # drf-spectacular registers extensions untyped
    """The OpenAPI security scheme of these tokens: knox's, under its name (``knoxApiToken``)."""

    target_class = "dataspace.accounts.authentication.TokenAuthentication"
