"""The declared table of database privileges: every table classified, key material readable only
by its keyring's holders, the custodian never writing the catalogue, HE workers on ciphertext
stores and jobs only, beat on nothing; and the ORM never asking for key material by default."""

from __future__ import annotations

import pytest

from dataspace import db_grants
from dataspace.accounts.models import Wallet
from dataspace.compute.models import EncryptedStore, HEKey
from dataspace.roles import ALLOWED_KEYRINGS, Keyring, Role
from dataspace.vault.management.commands.db_roles import model_tables
from dataspace.vault.models import DataKey

pytestmark = pytest.mark.smoke


def test_every_table_has_an_explicit_decision() -> None:
    assert sorted(db_grants.TABLE_GRANTS) == model_tables(), "classify the new table in dataspace/db_grants.py"


def _readable(role: Role, table: str) -> set[str] | None:
    """The columns ``role`` may SELECT from ``table`` (None: none at all; {"*"}: all)."""
    columns = ["id", *db_grants.SECRET_COLUMNS.get(table, ()), "other"]
    for grant in db_grants.grants_for(table, columns):
        if grant.role == role and "SELECT" in grant.privileges:
            return {"*"} if grant.columns is None else set(grant.columns)
    return None


@pytest.mark.parametrize("table", sorted(db_grants.SECRET_COLUMNS))
def test_key_material_is_readable_only_by_its_keyring_holders(table: str) -> None:
    for role in db_grants.DB_ROLES:
        readable = _readable(role, table)
        holds_secret = readable == {"*"}
        assert holds_secret == (role in db_grants.SECRET_READERS[table]), (role, table, readable)


def test_key_readers_are_roles_allowed_a_keyring() -> None:
    # A role that may read wrapped keys must be one the settings let hold a keyring to unwrap them.
    for readers in db_grants.SECRET_READERS.values():
        assert all(ALLOWED_KEYRINGS[role] for role in readers)
    assert Keyring.WALLET in ALLOWED_KEYRINGS[Role.CHAIN]


def test_the_web_and_he_tiers_read_no_key_material() -> None:
    for role in (Role.WEB, Role.HE, Role.BEAT):
        for table in db_grants.SECRET_COLUMNS:
            assert _readable(role, table) in (None, {"id", "other"}), (role, table)


def test_the_custodian_never_writes_the_catalogue() -> None:
    for table, grants in db_grants.TABLE_GRANTS.items():
        if table.startswith("catalog_"):
            assert set(grants.get(Role.CUSTODIAN, "")) <= {"r"}, table


def test_he_workers_touch_ciphertext_stores_and_jobs_only() -> None:
    touched = {table for table, grants in db_grants.TABLE_GRANTS.items() if Role.HE in grants}
    assert touched == {
        "compute_encryptedstore",
        "compute_hekey",
        "compute_job",
        "catalog_dataset",  # whether the dataset is personal (the store's layout)
        "chain_deployment",
        "django_content_type",
    }
    writes = {t for t, g in db_grants.TABLE_GRANTS.items() if set(g.get(Role.HE, "")) - {"r"}}
    assert writes == {"compute_job"}


def test_beat_touches_no_table() -> None:
    assert not any(Role.BEAT in grants for grants in db_grants.TABLE_GRANTS.values())


def test_queries_leave_key_material_out_unless_asked() -> None:
    assert "wrapped_key" not in str(DataKey.objects.all().query)
    assert "sealed_private_key" not in str(Wallet.objects.all().query)
    assert "secret_blob" not in str(HEKey.objects.all().query)
    assert "secret_blob" not in str(EncryptedStore(pk=1).keys.all().query)
    assert "wrapped_key" not in str(DataKey._base_manager.all().query)
    # Asked for by name (as refresh_from_db and the unsealing code do), it is loaded.
    assert "wrapped_key" in str(DataKey.objects.only("wrapped_key").query)
