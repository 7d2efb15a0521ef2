"""API token authentication: knox's tokens, checked with one plain query per request.

knox's own check reads every token of the user on every request, to delete the expired ones, and
builds its lookup through the ORM's query compiler: together most of a catalogue read's time
(bench/load.py). Here one prepared, hand-written query fetches the presented key's tokens with
their users; a request checks only its own token's expiry, and a user's expired tokens are deleted
when a new one is issued (``api_token_issue``), which is where they accumulate. Tokens, digests,
expiry and the inactive-user refusal are knox's, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, cast

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
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
from rest_framework.request import Request

from dataspace.accounts.models import User
from dataspace.postgres.cursors import prepared_cursor

_USER_FIELDS = tuple(User._meta.concrete_fields)
_USER_ATTNAMES = tuple(field.attname for field in _USER_FIELDS)
_INVALID = "Invalid token."
# Converter = (column index, the ORM's converters for it, the column expression they expect).
_Converters = list[tuple[int, list[Any], Any]]
# Per database vendor and alongside statement: the statement (quoting differs) and the converters
# the ORM would apply to the user's columns (SQLite hands back integers for booleans and naive
# datetimes).
_PREPARED: dict[tuple[str, str | None], tuple[str, _Converters]] = {}


def _token_sql(db: BaseDatabaseWrapper, alongside: str | None) -> str:
    users, tokens = User._meta.db_table, AuthToken._meta.db_table
    columns = ", ".join(f"u.{db.ops.quote_name(str(field.column))}" for field in _USER_FIELDS)
    # From model metadata (and a view's constant ``alongside`` statement) only; the key is a bound
    # parameter. The user's columns in the model's field order, so that a row becomes a user
    # through ``from_db``, as the ORM builds one.
    extra, join = (", a.*", f" CROSS JOIN ({alongside}) a") if alongside else ("", "")
    return (
        f"SELECT {columns}, t.digest, t.expiry, t.created{extra} "  # noqa: S608
        f"FROM {users} u JOIN {tokens} t ON t.user_id = u.id{join} WHERE t.token_key = %s"
    )


def _prepared(db: BaseDatabaseWrapper, alongside: str | None) -> tuple[str, _Converters]:
    prepared = _PREPARED.get((db.vendor, alongside))
    if prepared is None:
        converters: _Converters = []
        for index, field in enumerate(_USER_FIELDS):
            column = field.get_col(User._meta.db_table)
            found = db.ops.get_db_converters(column) + field.get_db_converters(db)
            if found:
                converters.append((index, found, column))
        prepared = _PREPARED[db.vendor, alongside] = (_token_sql(db, alongside), converters)
    return prepared


@dataclass(frozen=True)
class _Token:
    user: User
    digest: str
    expiry: datetime | None
    created: datetime | None
    alongside: tuple[Any, ...]


def _tokens_of_key(key: str, alongside: str | None) -> list[_Token]:
    """The tokens under the presented key (the token's first characters, not unique), each with
    its user, digest, expiry, creation time and the ``alongside`` statement's row. A cursor and
    ``from_db`` rather than ``raw()``: the raw query set's per-request work (column mapping, model
    init order) cost as much as the query itself."""
    db = connections[router.db_for_read(User)]
    sql, converters = _prepared(db, alongside)
    with prepared_cursor(db) as cursor:
        cursor.execute(sql, [key])
        rows = cursor.fetchall()
    width, found = len(_USER_FIELDS), []
    for row in rows:
        values = list(row[:width])
        for index, functions, column in converters:
            for function in functions:
                values[index] = function(values[index], column, db)
        digest, expiry, created = row[width : width + 3]
        user = User.from_db(db.alias, _USER_ATTNAMES, values)
        found.append(_Token(user, digest, _aware(expiry), _aware(created), tuple(row[width + 3 :])))
    return found


def _aware(value: datetime | str | None) -> datetime | None:
    """A token column read raw, as the ORM would have converted it: SQLite hands back a naive
    datetime (stored in UTC) or text, PostgreSQL an aware datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


class ReadsAlongsideToken(Protocol):
    """A view that asks the token check for one more read in the same statement, so that it costs
    no second round trip: ``token_alongside`` is a one-row SELECT built from model metadata only;
    its row reaches ``token_alongside_read`` once the token is accepted."""

    token_alongside: ClassVar[str]

    def token_alongside_read(self, request: Request, row: tuple[Any, ...]) -> None: ...


class TokenAuthentication(KnoxTokenAuthentication):  # type: ignore[misc]  # knox is untyped
    def authenticate(self, request: Request) -> tuple[User, AuthToken] | None:
        view = (request.parser_context or {}).get("view")
        self._alongside: ReadsAlongsideToken | None = view if hasattr(view, "token_alongside") else None
        self._request = request
        return cast("tuple[User, AuthToken] | None", super().authenticate(request))

    def authenticate_credentials(self, token: bytes) -> tuple[User, AuthToken]:
        try:
            presented = token.decode("utf-8")
            digest = hash_token(presented)
        except (UnicodeDecodeError, TypeError, ValueError):
            raise exceptions.AuthenticationFailed(_INVALID) from None
        key = presented[: CONSTANTS.TOKEN_KEY_LENGTH]
        alongside = getattr(self, "_alongside", None)
        for found in _tokens_of_key(key, alongside.token_alongside if alongside else None):
            user = found.user
            if not constant_time_compare(digest, found.digest):
                continue
            if found.expiry is not None and found.expiry < timezone.now():
                AuthToken.objects.filter(digest=found.digest).delete()
                token_expired.send(sender=self.__class__, username=user.get_username(), source="auth_token")
                break
            if not user.is_active:
                raise exceptions.AuthenticationFailed("User inactive or deleted.")
            auth_token = AuthToken(
                digest=found.digest, token_key=key, user=user, expiry=found.expiry, created=found.created
            )
            auth_token._state.adding, auth_token._state.db = False, user._state.db
            if alongside:
                alongside.token_alongside_read(self._request, found.alongside)
            return user, auth_token
        raise exceptions.AuthenticationFailed(_INVALID)


class TokenScheme(KnoxTokenScheme):  # type: ignore[no-untyped-call]  # drf-spectacular registers extensions untyped
    """The OpenAPI security scheme of these tokens: knox's, under its name (``knoxApiToken``)."""

    target_class = "dataspace.accounts.authentication.TokenAuthentication"
