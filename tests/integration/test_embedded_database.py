"""ISSUE-14: the embedded default's database is kept in WAL mode with synchronous=FULL; deleting
its file (a test database, ``var/``) leaves no log that a new database of that name would replay."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from django.db import connection

pytestmark = [pytest.mark.integration, pytest.mark.smoke]

SYNCHRONOUS_FULL = 2  # SQLite's number for synchronous=FULL


@pytest.mark.django_db
def test_the_embedded_database_is_in_wal_mode_and_syncs_each_commit() -> None:
    if connection.vendor != "sqlite":
        pytest.skip(f"this run's database is {connection.vendor}")
    with connection.cursor() as cursor:
        assert cursor.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert cursor.execute("PRAGMA synchronous").fetchone() == (SYNCHRONOUS_FULL,)


def test_a_new_database_does_not_replay_the_log_a_deleted_one_left(tmp_path: Path) -> None:
    # What a process killed with a connection open leaves when the file is deleted next: the
    # file gone, its write-ahead log still holding a committed table.
    name = tmp_path / "test.sqlite3"
    writer = sqlite3.connect(name)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # the table stays in the log, not in the file
    writer.execute("CREATE TABLE left_behind (x)")
    writer.commit()
    log = Path(f"{name}-wal")
    shutil.copy(log, tmp_path / "kept")
    writer.close()  # a clean close checkpoints and deletes the log; a killed process does not
    name.unlink()
    shutil.move(tmp_path / "kept", log)

    fresh = sqlite3.connect(name)
    tables = fresh.execute("SELECT name FROM sqlite_master").fetchall()
    fresh.close()
    assert tables == []
    assert not log.exists()
