"""The PostgreSQL backend (dataspace/postgres/base.py) on a real server: the health check that
asks nothing of a healthy idle connection still replaces one the server ended, and the token
check is planned once per connection."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from typing import Any

import psycopg
import pytest
from django.db import connection

from dataspace.accounts.models import User
from dataspace.catalog.catalogue_cache import STATE_SQL
from dataspace.postgres.base import DatabaseWrapper
from tests.support.datasets import ready_dataset
from tests.support.users import client_for
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def postgres(transactional_db: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the PostgreSQL backend needs PostgreSQL (set DATABASE_URL=postgres://...)")


def other_session() -> psycopg.Connection[Any]:
    """A connection of its own, to watch and end the test's connection from outside."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid: int = cursor.fetchone()[0]
    return pid


def test_an_idle_connection_is_usable_without_a_statement() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'the last statement' AS marker")
    pid = connection.connection.info.backend_pid
    assert connection.is_usable()
    with other_session() as watcher:
        last = watcher.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    # Django's own check would have sent SELECT 1, which pg_stat_activity would show instead.
    assert last == ("SELECT 'the last statement' AS marker",)


def test_a_connection_the_server_ended_is_replaced_before_the_next_use(provider: User, consumer: User) -> None:
    ready_dataset(provider, b"a,b\n1,2\n3,4\n", title="one")
    client = client_for(consumer)
    assert client.get("/api/datasets/").status_code == 200
    ended = backend_pid()
    socket = connection.connection.pgconn.socket
    with other_session() as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [ended]).fetchone() == (True,)
    # The server's farewell reaches the socket a moment later.
    wait_for(lambda: select.select([socket], [], [], 0)[0], timeout=10, interval=0.01)
    assert not connection.is_usable()
    # What the request cycle does before a request (close_old_connections), then the read.
    connection.close_if_unusable_or_obsolete()
    response = client.get("/api/datasets/")
    assert response.status_code == 200, response.content
    assert [d["title"] for d in response.json()["results"]] == ["one"]
    assert backend_pid() != ended


def test_the_token_check_is_planned_once_per_connection(provider: User, consumer: User) -> None:
    dataset = ready_dataset(provider, b"a,b\n1,2\n3,4\n", title="one")
    client = client_for(consumer)
    # A connection of its own: earlier tests on this worker's connection may have prepared the
    # catalogue's state statement (a session read) there.
    connection.close()
    for _ in range(3):
        assert client.get("/api/datasets/").status_code == 200
        assert client.get(f"/api/datasets/{dataset.pk}/").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    # One token statement (with the catalogue's state alongside), prepared once however many
    # reads; the ORM's own statements are not prepared.
    assert len(prepared) == 1, prepared
    assert "t.token_key = $1" in prepared[0]
    assert STATE_SQL in prepared[0]


def test_prepared_statements_can_be_turned_off_for_a_pooler() -> None:
    """``DB_PREPARED_STATEMENTS=0`` gives psycopg no threshold, and then nothing is prepared."""
    script = "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default'])"
    env = {**os.environ, "DB_PREPARED_STATEMENTS": "0"}
    shown = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert "'ENGINE': 'dataspace.postgres'" in shown
    assert "'prepare_threshold'" not in shown
    options = {k: v for k, v in connection.settings_dict["OPTIONS"].items() if k != "prepare_threshold"}
    unprepared = DatabaseWrapper({**connection.settings_dict, "OPTIONS": options}, alias="unprepared")
    try:
        with unprepared.prepared_cursor() as cursor:
            cursor.execute(STATE_SQL)
            cursor.execute("SELECT count(*) FROM pg_prepared_statements")
            assert cursor.fetchone() == (0,)
    finally:
        unprepared.close()
