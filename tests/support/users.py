"""Users and API clients for tests: made through the same services the API uses."""

from __future__ import annotations

import io
from typing import Any

from rest_framework.test import APIClient

from dataspace.accounts.models import Role, User
from dataspace.accounts.services import api_token_issue, user_create


def make_user(username: str, *roles: Role) -> User:
    return user_create(username=username, password=f"pw-{username}-0123456789", roles=roles)


def client_for(user: User | None) -> APIClient:
    """An API client holding a fresh token of ``user`` (anonymous for None)."""
    client = APIClient()
    if user is not None:
        _, token = api_token_issue(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def upload(client: APIClient, content: bytes, name: str = "data.csv", **fields: Any) -> Any:
    """POST /api/datasets/ with ``content`` as the file part."""
    handle = io.BytesIO(content)
    handle.name = name
    return client.post(
        "/api/datasets/", {"file": handle, "title": fields.pop("title", "t"), **fields}, format="multipart"
    )
