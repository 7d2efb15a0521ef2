"""ISSUE-14: what a process opens as it starts so that its first job does not: the broker
transport (web processes) or connection (worker processes) its task producer publishes on, and
the keyrings (tests/unit/test_vault_keys.py)."""

from __future__ import annotations

import gc
import logging
import threading

import pytest
from celery import Celery

from dataspace import tasking
from dataspace.celery import app

pytestmark = [pytest.mark.smoke]


def test_connect_ahead_leaves_a_connected_producer_for_the_first_send(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dataspace.tasking")
    tasking.connect_ahead()
    assert "not opened ahead" not in caplog.text
    with app.producer_or_acquire() as producer:  # the pool hands back the connection opened ahead
        assert producer.connection.connected
        # Every queue a task is routed to is declared on it: the first send declares none.
        declared = producer.connection.declared_entities  # kombu keeps the entities' hashes
        assert all(hash(app.amqp.queues[name]) in declared for name in tasking.routed_queues())
    assert {"default", "chain", "he", "custody", "ingest"} <= set(tasking.routed_queues())


def test_connect_ahead_leaves_the_queues_a_worker_consumes_as_they_were(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A worker's warm-up thread runs it while the consumer iterates the app's queues: declaring a
    # queue the worker does not consume must not add it there ("dictionary changed size").
    caplog.set_level(logging.INFO, logger="dataspace.tasking")
    consumed = app.amqp.Queues({"default": app.amqp.queues["default"]})
    monkeypatch.setitem(vars(tasking.current_app.amqp), "queues", consumed)  # its cached value
    tasking.connect_ahead()
    assert "not opened ahead" not in caplog.text
    assert list(consumed) == ["default"]


def test_gunicorn_opens_the_broker_connection_before_a_web_process_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from dataspace import gunicorn_conf

    # The hook gunicorn calls in each web process once it has loaded the app, before it serves;
    # the Procfile passes this settings module (so do the image and compose). The integration
    # test of a web process whose broker is away sees the hook's log line from real gunicorn.
    procfile = Path(tasking.__file__).resolve().parents[1] / "Procfile"
    assert "--config python:dataspace.gunicorn_conf" in procfile.read_text()
    calls: list[str] = []
    monkeypatch.setattr(tasking, "connect_ahead", lambda: calls.append("connect"))
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    gunicorn_conf.post_worker_init(worker=None)
    assert calls == ["connect", "freeze"]


def test_a_worker_freezes_what_it_loaded_once_it_is_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    # Frozen, the ~220k objects a worker starts with are not walked by the cyclic collector again,
    # at its exit least of all (a solo worker's stop on SIGTERM: 2.1 s before, 0.2 s after).
    from celery import signals

    frozen: list[None] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(None))
    signals.worker_ready.send(sender=None)
    assert frozen == [None]


def test_connect_ahead_leaves_a_broker_that_is_away_to_the_first_send(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A real broker URL on a port where nothing listens: the connection is refused. (Celery
    # prefers the CELERY_BROKER_URL environment variable, CI's, to the app's own URL.)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    away = Celery("away", broker="redis://127.0.0.1:9/0", set_as_current=False)
    monkeypatch.setattr(tasking, "current_app", away)
    caplog.set_level(logging.INFO, logger="dataspace.tasking")
    tasking.connect_ahead()  # does not raise: the process starts regardless
    assert "the broker connection was not opened ahead" in caplog.text
    away.close()


def test_load_transport_imports_the_transport_without_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    # The web tier calls it as it imports its WSGI module: with the broker away it neither waits
    # nor fails (nothing connects), and it leaves no thread behind.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    away = Celery("away", broker="redis://127.0.0.1:9/0", set_as_current=False)
    monkeypatch.setattr(tasking, "current_app", away)
    threads = threading.active_count()
    tasking.load_transport()
    assert threading.active_count() == threads
    away.close()


def test_a_worker_process_warms_up_on_a_thread_of_its_own() -> None:
    from celery import signals

    from dataspace.celery import _warm_up_process

    # Connected to the signal each pool process sends as it starts; called directly here, so that
    # the signal's other receivers (the tee worker's pool) stay out of this process.
    assert _warm_up_process in [receiver() for _key, receiver in signals.worker_process_init.receivers]
    before = {t.ident for t in threading.enumerate()}
    _warm_up_process()
    started = [t for t in threading.enumerate() if t.ident not in before and t.name == "process-warm-up"]
    assert len(started) == 1
    assert started[0].daemon  # never holds the process's exit
    started[0].join(timeout=60)
    assert not started[0].is_alive()
