"""The database roles on a real PostgreSQL: each process role logs in as its own PostgreSQL role
(``manage.py db_roles``) and the database itself refuses what is outside its purpose. Every check
runs as that role (``SET ROLE`` inside the test's transaction, so the grants roll back with it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.management import call_command
from django.db import ProgrammingError, connection, transaction

from dataspace.accounts.models import Role as UserRole
from dataspace.accounts.models import Wallet
from dataspace.accounts.selectors import wallet_get
from dataspace.accounts.services import wallet_create_custodial
from dataspace.roles import Role
from dataspace.vault.models import DataKey
from tests.support.datasets import ready_dataset
from tests.support.users import client_for, make_user, upload

pytestmark = [pytest.mark.django_db]
CSV = b"age,region\n" + b"".join(f"{20 + i % 50},r{i % 3}\n".encode() for i in range(40))


@pytest.fixture(autouse=True)
def granted(db: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("database roles and GRANTs need PostgreSQL (set DATABASE_URL=postgres://...)")
    call_command("db_roles", "--apply", verbosity=0)


@contextmanager
def as_role(role: Role) -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE redlake_{role.value}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")


def run(statement: str) -> list[tuple[Any, ...]]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetchall() if cursor.description else []


def denied(statement: str) -> None:
    with pytest.raises(ProgrammingError, match="permission denied"):
        run(statement)


def test_the_web_role_cannot_select_key_material() -> None:
    with as_role(Role.WEB):
        denied("SELECT * FROM vault_datakey")
        denied("SELECT wrapped_key FROM vault_datakey")
        denied("SELECT sealed_private_key FROM accounts_wallet")
        denied("SELECT * FROM accounts_wallet")
        denied("SELECT secret_blob FROM compute_hekey")
        denied("SELECT * FROM chain_sendernonce")


def test_the_web_role_serves_its_api_without_key_material() -> None:
    provider = make_user("prov", UserRole.PROVIDER)
    with as_role(Role.WEB):
        api = client_for(provider)  # a knox token written as the web role
        assert api.post("/api/me/wallet/custodial/").status_code == 201
        response = upload(api, CSV, title="Registry")
        assert response.status_code == 202, response.json()
        assert api.get(f"/api/ingests/{response.json()['id']}/").status_code == 200
        assert api.get("/api/datasets/").status_code == 200
        assert api.get("/api/operations/").status_code == 200
        wallet = wallet_get(user=provider)
        assert wallet is not None
        assert wallet.address.startswith("0x")
        # The sealed key and its wrapped data key stay out of reach, even asked for by name.
        with pytest.raises(ProgrammingError, match="permission denied"), transaction.atomic():
            Wallet.objects.get(pk=wallet.pk).sealed_private_key  # noqa: B018
        with pytest.raises(ProgrammingError, match="permission denied"), transaction.atomic():
            DataKey.objects.get(pk=wallet.data_key_id).wrapped_key  # noqa: B018


def test_the_web_role_deletes_a_dataset_and_its_key() -> None:
    provider = make_user("prov", UserRole.PROVIDER)
    dataset = ready_dataset(provider, CSV)
    with as_role(Role.WEB):
        api = client_for(provider)
        assert api.delete(f"/api/datasets/{dataset.id}/").status_code == 204
    assert not DataKey.objects.filter(pk=dataset.data_key_id).exists()


def test_the_custodian_cannot_write_catalogue_rows() -> None:
    provider = make_user("prov", UserRole.PROVIDER)
    dataset = ready_dataset(provider, CSV)
    with as_role(Role.CUSTODIAN):
        denied(f"UPDATE catalog_dataset SET title = 'forged' WHERE id = '{dataset.id}'")
        denied(f"DELETE FROM catalog_dataset WHERE id = '{dataset.id}'")
        denied("UPDATE catalog_ingest SET status = 'failed'")
        denied("INSERT INTO catalog_ingest (id) VALUES (gen_random_uuid())")
        denied("UPDATE policies_offer SET max_calls = 1000000")
        denied("SELECT * FROM knox_authtoken")
        # What a release reads: the job and its terms, the store's sealed secret and its data key.
        assert run(f"SELECT title FROM catalog_dataset WHERE id = '{dataset.id}'") == [("d",)]
        wrapped = DataKey.objects.get(pk=dataset.data_key_id).wrapped_key
        assert len(bytes(wrapped)) > 32
        run("SELECT id, status, release_attempts, receipt FROM compute_job")
        run("SELECT secret_blob, data_key_id FROM compute_hekey")
        run("SELECT * FROM privacy_cachedanswer")
        run("UPDATE compute_job SET release_attempts = release_attempts WHERE false")


def test_he_workers_read_ciphertext_stores_and_jobs_only() -> None:
    provider = make_user("prov", UserRole.PROVIDER)
    wallet_create_custodial(user=provider)
    with as_role(Role.HE):
        run("SELECT id, public_blob, public_sha256 FROM compute_hekey")
        run("SELECT * FROM compute_encryptedstore")
        run("UPDATE compute_job SET compute_attempts = compute_attempts WHERE false")
        denied("SELECT secret_blob FROM compute_hekey")
        denied("SELECT id FROM vault_datakey")
        denied("SELECT * FROM accounts_user")
        denied("SELECT * FROM accounts_wallet")
        denied("SELECT * FROM catalog_ingest")
        denied("SELECT * FROM chain_chaintransaction")
        denied("UPDATE catalog_dataset SET title = 'x'")


def test_beat_reads_nothing() -> None:
    with as_role(Role.BEAT):
        denied("SELECT * FROM compute_job")
        denied("SELECT * FROM accounts_user")


def test_only_the_chain_signer_reads_wallet_keys() -> None:
    provider = make_user("prov", UserRole.PROVIDER)
    wallet = wallet_create_custodial(user=provider)
    for role in (Role.WEB, Role.INGEST, Role.CUSTODIAN, Role.HE, Role.BEAT):
        with as_role(role):
            denied(f"SELECT sealed_private_key FROM accounts_wallet WHERE id = {wallet.pk}")
    with as_role(Role.CHAIN):
        assert run(f"SELECT sealed_private_key IS NOT NULL FROM accounts_wallet WHERE id = {wallet.pk}") == [(True,)]
        run("SELECT wrapped_key FROM vault_datakey")
        run("SELECT next_nonce FROM chain_sendernonce")


def test_print_sql_names_every_role_and_elides_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setenv("REDLAKE_DB_PASSWORD_WEB", "s3cret-web")
    out = io.StringIO()
    call_command("db_roles", "--print-sql", stdout=out)
    script = out.getvalue()
    assert "s3cret-web" not in script
    assert "PASSWORD '<elided>'" in script
    for role in ("web", "ingest", "he", "custodian", "chain", "beat"):
        assert f'"redlake_{role}"' in script
    # The web role reads data keys' bookkeeping columns, never the wrapped key itself.
    line = next(line for line in script.splitlines() if line.endswith('ON "vault_datakey" TO "redlake_web";'))
    granted = set(re.findall(r'"(\w+)"', line.split(" ON ")[0]))
    assert granted == {"id", "purpose", "keyring", "kek_id", "created_at", "rewrapped_at"}
