"""The process roles Redlake runs as, and which keyrings each may hold.

``REDLAKE_ROLE`` names the one job a process does in production (compose starts one service per
role); ``dev`` is the all-in-one process of ``make run`` and the tests, which holds every
keyring because it does every job. The keyring table is the contract the settings enforce at
startup: a role given a key outside its purpose refuses to start.
"""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    DEV = "dev"
    WEB = "web"
    INGEST = "ingest"
    HE = "he"
    CUSTODIAN = "custodian"
    CHAIN = "chain"
    BEAT = "beat"


class Keyring(enum.StrEnum):
    """Root keys by purpose: each wraps one kind of secret and nothing else."""

    DATA = "data"  # datasets' data keys
    CKKS = "ckks"  # CKKS secret contexts
    WALLET = "wallet"  # custodial wallets' private keys
    RECEIPT = "receipt"  # the custodian's receipt-signing key


ALLOWED_KEYRINGS: dict[Role, frozenset[Keyring]] = {
    Role.DEV: frozenset(Keyring),
    Role.WEB: frozenset(),
    Role.INGEST: frozenset({Keyring.DATA}),
    Role.HE: frozenset(),
    Role.CUSTODIAN: frozenset({Keyring.DATA, Keyring.CKKS, Keyring.RECEIPT}),
    Role.CHAIN: frozenset({Keyring.WALLET}),
    Role.BEAT: frozenset(),
}


# ISSUE-12: where each keyring's private half comes from, and the startup refusal.


def derived_keyring_spec(vault_kek: str, keyring: Keyring) -> str:
    """``VAULT_KEK`` is the development shorthand for all four keyrings: ``file:<dir>`` gives
    ``file:<dir>/<keyring>``, ``env:<VAR>`` gives ``env:<VAR>_<KEYRING>``."""
    scheme, _, target = vault_kek.partition(":")
    if scheme == "file" and target:
        return f"file:{target.rstrip('/')}/{keyring.value}"
    if scheme == "env" and target:
        return f"env:{target}_{keyring.name}"
    return ""


def held_keyring_specs(*, explicit: dict[str, str], vault_kek: str) -> dict[Keyring, tuple[str, str]]:
    """The keyrings whose private half a process is given: keyring -> (spec, the setting naming it)."""
    held: dict[Keyring, tuple[str, str]] = {}
    for keyring in Keyring:
        if spec := explicit.get(keyring.value, ""):
            held[keyring] = (spec, f"REDLAKE_KEYRING_{keyring.name}")
        elif vault_kek and (spec := derived_keyring_spec(vault_kek, keyring)):
            held[keyring] = (spec, "VAULT_KEK")
    return held


def refuse_foreign_keyrings(*, role: str, held: dict[Keyring, str]) -> Role:
    """Raises ImproperlyConfigured, naming the role and the key, when a role is given a keyring
    outside its purpose (``held``: keyring -> the setting that gave it)."""
    from django.core.exceptions import ImproperlyConfigured

    try:
        parsed = Role(role)
    except ValueError:
        raise ImproperlyConfigured(
            f"REDLAKE_ROLE={role!r} is not a role; expected one of {', '.join(r.value for r in Role)}"
        ) from None
    for keyring, setting in sorted(held.items()):
        if keyring not in ALLOWED_KEYRINGS[parsed]:
            raise ImproperlyConfigured(
                f"role {parsed.value!r} must not hold the {keyring.value!r} keyring (given by {setting}); "
                f"it may hold: {', '.join(sorted(k.value for k in ALLOWED_KEYRINGS[parsed])) or 'none'}"
            )
    return parsed
