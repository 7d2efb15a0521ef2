"""ISSUE-14: the embedded broker (kombu's SQLAlchemy transport on a SQLite file) keeps its file in
WAL mode with synchronous=NORMAL, so a send commits without the rollback journal's fsyncs; a
message sent that way is there for the next reader. Its transport (dataspace/embedded_broker.py)
polls briskly just after a message and at the idle interval otherwise."""

from __future__ import annotations

import sqlite3

import pytest
from django.conf import settings
from sqlalchemy import text

from dataspace import tasking
from dataspace.celery import app
from tests.support.workers import purge_broker

pytestmark = [pytest.mark.integration, pytest.mark.smoke]

if not str(settings.CELERY_BROKER_URL).startswith("sqla+sqlite"):
    pytest.skip(
        f"the embedded broker is SQLite; this run's broker is {str(settings.CELERY_BROKER_URL).split(':', 1)[0]}",
        allow_module_level=True,
    )

BROKER_FILE = str(settings.CELERY_BROKER_URL).removeprefix("sqla+sqlite:///")
SYNCHRONOUS_NORMAL = 1  # SQLite's number for synchronous=NORMAL (FULL, its default, is 2)


def test_a_send_goes_to_a_wal_file_through_a_connection_that_syncs_normally() -> None:
    purge_broker()
    assert tasking.enqueue("dataspace.catalog.tasks.register_datasets_on_chain")

    with app.connection_for_write() as connection:
        session = connection.default_channel.session
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA synchronous")).scalar() == SYNCHRONOUS_NORMAL
        # The message is there for a reader: purging the queue it went to takes it.
        queue = app.amqp.router.route({}, "dataspace.catalog.tasks.register_datasets_on_chain")["queue"].name
        assert connection.default_channel.queue_purge(queue) == 1

    # The mode is the file's, so every process that opens it (a worker, beat) writes through WAL.
    outside = sqlite3.connect(BROKER_FILE)
    try:
        assert outside.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        outside.close()


def test_the_worker_polls_briskly_after_a_message_and_at_the_idle_interval_otherwise() -> None:
    from kombu import Connection, Exchange, Queue

    from dataspace import embedded_broker

    app.loader.import_default_modules()  # configures the app, which installs the transport
    queue = Queue("redlake-test-polling", Exchange("redlake-test-polling"), routing_key="polling")
    received: list[object] = []
    with Connection(settings.CELERY_BROKER_URL) as connection:
        transport = connection.transport
        assert isinstance(transport, embedded_broker.Transport)
        assert transport.polling_interval == settings.EMBEDDED_BROKER_POLLING_INTERVAL

        with connection.Producer() as producer:
            producer.publish({"n": 1}, exchange=queue.exchange, routing_key="polling", declare=[queue])
        with connection.Consumer(queue, callbacks=[lambda body, message: (received.append(body), message.ack())]):
            connection.drain_events(timeout=10)
        assert received == [{"n": 1}]
        assert transport.polling_interval == settings.EMBEDDED_BROKER_BUSY_POLLING_INTERVAL

        transport._last_message -= settings.EMBEDDED_BROKER_BUSY_SECONDS  # as if that long ago
        assert transport.polling_interval == settings.EMBEDDED_BROKER_POLLING_INTERVAL


def test_a_wait_for_messages_ends_within_a_slice_so_a_stopping_worker_goes_promptly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Celery worker waits 2 s at a time and looks between waits whether it should stop; kombu's
    # wait polls the table until its timeout. The transport hands kombu at most a slice of it.
    from kombu import Connection
    from kombu.transport import sqlalchemy as kombu_sqlalchemy

    from dataspace import embedded_broker

    waits: list[float | None] = []

    def kombus_wait(self: object, connection: object, timeout: float | None = None) -> None:
        waits.append(timeout)
        raise TimeoutError

    monkeypatch.setattr(kombu_sqlalchemy.Transport, "drain_events", kombus_wait)
    app.loader.import_default_modules()
    with Connection(settings.CELERY_BROKER_URL) as connection:
        transport = connection.transport
        assert isinstance(transport, embedded_broker.Transport)
        transport._last_message = float("-inf")  # idle: no busy window to wait out first
        with pytest.raises(TimeoutError):
            transport.drain_events(connection, timeout=2.0)
        with pytest.raises(TimeoutError):
            transport.drain_events(connection, timeout=0.1)
        with pytest.raises(TimeoutError):
            transport.drain_events(connection)  # no timeout: kombu waits for a message as asked
    assert waits == [embedded_broker.Transport.wait_slice, 0.1, None]
