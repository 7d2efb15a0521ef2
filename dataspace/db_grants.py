"""What each process role may do to each table: the PostgreSQL GRANTs of ``manage.py db_roles``.

Every table the models create is classified here, by its ``db_table``; a table nobody classified
fails a test (``tests/unit/test_db_grants.py``), so a new table gets an explicit decision instead
of whatever a wildcard would give it. Each role logs in as its own PostgreSQL role
(``<prefix><role>``, e.g. ``redlake_web``) and gets exactly the privileges below; the owner (the
role that runs ``migrate``) keeps everything, and ``dev`` is the owner.

Key material sits in three columns (``SECRET_COLUMNS``). A role that does not hold the keyring of a
column gets SELECT on the table's other columns only, so ``SELECT *`` fails for it and the ORM
(whose managers defer those columns) never asks for them: the web tier cannot read a wrapped data
key or a sealed wallet key even with code execution and its own database password.

Letters: ``r`` SELECT, ``a`` INSERT, ``w`` UPDATE, ``d`` DELETE.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataspace.roles import Role

DB_ROLES: tuple[Role, ...] = (Role.WEB, Role.INGEST, Role.HE, Role.CUSTODIAN, Role.CHAIN, Role.BEAT)
PRIVILEGES = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}

# The key material, and the roles that may read it (the keyring holders; which rows a role can
# unwrap is then decided by the keyring each row names, `vault_datakey.keyring`).
SECRET_COLUMNS: dict[str, tuple[str, ...]] = {
    "vault_datakey": ("wrapped_key",),  # every data key, wrapped by a root key
    "accounts_wallet": ("sealed_private_key",),  # custodial wallets' keys, sealed
    "compute_hekey": ("secret_blob",),  # where a CKKS secret context is sealed
}
SECRET_READERS: dict[str, frozenset[Role]] = {
    # ingest opens datasets; the custodian the CKKS secrets' data keys; the chain signer wallets'.
    "vault_datakey": frozenset({Role.INGEST, Role.CUSTODIAN, Role.CHAIN}),
    "accounts_wallet": frozenset({Role.CHAIN}),
    "compute_hekey": frozenset({Role.CUSTODIAN}),
}

W, G, H, C, X = Role.WEB, Role.INGEST, Role.HE, Role.CUSTODIAN, Role.CHAIN  # G: inGest
# Readers of the shared, non-secret rows every worker needs to find its work (a job's agreement,
# offer and dataset; the contracts' addresses). The HE workers are deliberately absent from most.
_WORKERS = {G: "r", C: "r", X: "r"}

TABLE_GRANTS: dict[str, dict[Role, str]] = {
    # Django and its admin, sessions and API tokens: the web tier's own.
    "django_admin_log": {W: "rad"},
    "django_content_type": {W: "r", **_WORKERS, H: "r"},
    "auth_permission": {W: "r", **_WORKERS},
    "auth_group": {W: "rawd", **_WORKERS},
    "auth_group_permissions": {W: "rawd", **_WORKERS},
    "django_session": {W: "rawd"},
    "knox_authtoken": {W: "rawd"},
    # Accounts: the web tier creates users and wallets; workers read who is who.
    "accounts_user": {W: "rawd", **_WORKERS},
    "accounts_user_groups": {W: "rawd", **_WORKERS},
    "accounts_user_user_permissions": {W: "rawd", **_WORKERS},
    "accounts_wallet": {W: "rad", **_WORKERS},
    "accounts_walletchallenge": {W: "rawd"},
    # The vault: new data keys are written where content is sealed (web uploads, ingest stores);
    # the wrapped key column is readable only by SECRET_READERS. Rotation runs as the owner.
    "vault_datakey": {W: "rad", G: "rad", C: "r", X: "r"},
    # The catalogue: written by the web tier (uploads, edits, deletions) and ingest; the chain
    # signer records registrations. The custodian and HE workers only read.
    "catalog_ingest": {W: "rawd", G: "rawd", C: "r", X: "r"},
    "catalog_dataset": {W: "rawd", G: "raw", C: "r", X: "rw", H: "r"},
    # The chain: every tier that starts a chain write queues an outbox row; only the chain
    # signer signs, sends, indexes and keeps nonces.
    "chain_deployment": {W: "r", G: "r", C: "r", X: "raw", H: "r"},
    "chain_sendernonce": {X: "raw"},
    "chain_chaintransaction": {W: "ra", G: "ra", C: "ra", X: "raw"},
    "chain_chainevent": {W: "r", G: "r", X: "rawd"},
    "chain_indexercursor": {W: "r", G: "r", X: "raw"},
    # Privacy accounting: reserved at the request (web), spent at the settlement (chain), estimated
    # at ingest, deleted with their dataset (web); the custodian reads budgets and the answer cache.
    "privacy_datasetbudget": {W: "rawd", G: "raw", C: "r", X: "raw"},
    "privacy_consumershare": {W: "rawd", G: "r", C: "r", X: "raw"},
    "privacy_privacyloss": {W: "rawd", G: "r", C: "r", X: "rawd"},
    "privacy_cachedanswer": {W: "rd", G: "r", C: "r", X: "ra"},
    # Policies: published and accepted through the web tier, followed on chain.
    "policies_offer": {W: "rawd", G: "r", C: "r", X: "rw"},
    "policies_agreement": {W: "raw", G: "r", C: "r", X: "rw"},
    # Compute: stores built by ingest, read by HE and the custodian; jobs moved by every step.
    "compute_encryptedstore": {W: "rd", G: "rawd", C: "r", X: "r", H: "r"},
    "compute_hekey": {W: "rd", G: "rad", C: "r", H: "r"},
    "compute_job": {W: "raw", G: "r", C: "rw", X: "rw", H: "rw"},
    # ISSUE-14: settlement batches are built and followed by the chain signer; the web tier shows
    # a batched job's proof, the reconciliation (default queue) checks it; the custodian counts the
    # released jobs still waiting for one.
    "compute_settlementbatch": {W: "r", G: "r", X: "raw"},
    "compute_settlementbatchentry": {W: "r", G: "r", C: "r", X: "raw"},
    # ISSUE-13: algorithms submitted and decided through the web tier, their approvals followed
    # on chain; the custodian (tee queue, key broker) reads them and owns the attestation nonces.
    "compute_algorithm": {W: "raw", C: "r", X: "rw"},
    "compute_attestationnonce": {C: "raw"},
    # Audit: the reconciliation runs on the default queue (the ingest worker) and is read by the web.
    "audit_reconcilereport": {W: "r", G: "ra", X: "r"},
}
# Beat only sends messages on a schedule: it reads and writes no table.


@dataclass(frozen=True)
class Grant:
    table: str
    role: Role
    privileges: tuple[str, ...]  # SQL privilege names
    columns: tuple[str, ...] | None  # SELECT limited to these columns; None: every column


def grants_for(table: str, columns: list[str]) -> list[Grant]:
    """The grants of one table, with ``columns`` its columns in the database."""
    grants = []
    for role, letters in TABLE_GRANTS[table].items():
        secret = SECRET_COLUMNS.get(table, ())
        limited = bool(secret) and "r" in letters and role not in SECRET_READERS.get(table, frozenset())
        grants.append(
            Grant(
                table=table,
                role=role,
                privileges=tuple(PRIVILEGES[letter] for letter in letters),
                columns=tuple(c for c in columns if c not in secret) if limited else None,
            )
        )
    return grants
