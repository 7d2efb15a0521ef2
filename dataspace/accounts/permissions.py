"""Role checks for the API. Object ownership is enforced by selectors (other users' objects 404)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from dataspace.accounts.models import Role, User


def request_user(request: Request) -> User:
    """The authenticated user of a request that passed the view's permission checks."""
    assert isinstance(request.user, User)
    return request.user


class _HasRole(BasePermission):
    role: Role
    message = "This endpoint needs a role the account does not hold."
    code = "role_required"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and isinstance(user, User) and user.has_role(self.role))


class IsProvider(_HasRole):
    role = Role.PROVIDER
    message = "This endpoint is for data providers."


class IsConsumer(_HasRole):
    role = Role.CONSUMER
    message = "This endpoint is for data consumers."


class IsAuditor(_HasRole):
    role = Role.AUDITOR
    message = "This endpoint is for auditors."
