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
