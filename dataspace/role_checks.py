"""Which process may run a piece of code that holds a secret.

Compose starts one service per ``dataspace.roles.Role`` (``REDLAKE_ROLE``); the settings give each
only its own keyrings. This module is the second fence, in the code itself: a function that
unseals or uses a key calls ``require_role`` at its entry, so a web or HE process that reaches it
(a bug, or code execution through an upload) is refused before any key is touched, even where the
key would happen to be reachable. ``dev`` is the all-in-one process of ``make run`` and the tests
and passes every check. A refusal is a deployment error, not a user's: it is never mapped to an
HTTP answer, and a task that meets it fails loudly in the wrong worker's log.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from dataspace.roles import Role


class WrongRole(RuntimeError):
    """This process's role may not run the code that raised it."""


def current_role() -> Role:
    """The role of this process (``REDLAKE_ROLE``, default ``dev``)."""
    value = getattr(settings, "REDLAKE_ROLE", Role.DEV.value)
    try:
        return Role(value)
    except ValueError:
        names = ", ".join(role.value for role in Role)
        raise ImproperlyConfigured(f"REDLAKE_ROLE={value!r} is not a role (one of {names}).") from None


def require_role(*allowed: Role, purpose: str) -> None:
    """Refuses (``WrongRole``) unless this process runs as one of ``allowed`` or as ``dev``."""
    role = current_role()
    if role == Role.DEV or role in allowed:
        return
    names = " or ".join(r.value for r in allowed)
    raise WrongRole(f"{purpose} runs only in the {names} role; this process is {role.value} (REDLAKE_ROLE).")
