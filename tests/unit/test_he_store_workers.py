"""Encryption worker processes: they start inside a Celery prefork child (a daemonic billiard
process, where the stdlib refuses children), their absence degrades to one process, and none
outlives the build that started it: not when it fails, is interrupted or is killed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from django.conf import settings
from django.test import override_settings

from dataspace.compute import he
from dataspace.compute.he import executors
from dataspace.compute.he.encryption import encrypt_columns
from dataspace.compute.he.keys import KeyPair, generate_keys, load_secret_context
from dataspace.compute.he.params import Level
from dataspace.compute.he.profiling import StoreOptions
from tests.support import processes
from tests.support.fresh_process import call_with_django
from tests.support.he_store import stored_rows
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]

ROWS = 10_000
SCHEMA = [{"name": "x", "type": "float", "nulls": 0}]


def table() -> pa.Table:
    return pa.table({"x": np.arange(ROWS, dtype=np.float64) / 100})


def build_and_sum(location: str, keys: KeyPair, workers: int) -> tuple[float, list[str]]:
    """Builds a one-column store and returns (decrypted sum, warnings logged while building)."""
    warnings: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    logging.getLogger(he.__name__).addHandler(handler)
    storages = {**settings.STORAGES, "default": {**settings.STORAGES["default"], "OPTIONS": {"location": location}}}
    try:
        with override_settings(STORAGES=storages):
            data = table()
            layout = encrypt_columns(
                batches=lambda: iter(data.to_batches(max_chunksize=2_500)),
                schema=SCHEMA,
                rows=ROWS,
                options=StoreOptions(bounds={"x": (0, 100)}, workers=workers, quantile_buckets=0),
                keys={"products": keys},
                blob_prefix="he/workers",
            )
            context = load_secret_context(keys.secret_context)
            return float(stored_rows(layout, "num:x", context).sum()) * layout.column("x").scale, warnings
    finally:
        logging.getLogger(he.__name__).removeHandler(handler)


@pytest.fixture(scope="module")
def keys() -> KeyPair:
    return generate_keys("products")


def expected_sum() -> float:
    return float(np.arange(ROWS).sum() / 100)


def test_two_workers_start_inside_a_celery_prefork_child(keys: KeyPair, tmp_path: Path) -> None:
    import billiard

    # Celery's prefork pool makes daemonic children. Spawned rather than forked here: a fork of
    # the test process (pyarrow's and jemalloc's threads, a browser driver) can deadlock in the
    # child on a lock another thread held, which a worker process started fresh never inherits.
    pool: Any = billiard.get_context("spawn").Pool(1)
    try:
        total, warnings = pool.apply(call_with_django, (f"{__name__}:build_and_sum", str(tmp_path), keys, 2))
    finally:
        pool.terminate()
        pool.join()
    assert warnings == []  # no fallback: the billiard pool started
    assert total == pytest.approx(expected_sum(), rel=1e-9)


def test_a_pool_that_cannot_start_falls_back_to_one_process(
    keys: KeyPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(workers: int, secret_contexts: dict[str, bytes], seeded: bool = True) -> Any:
        raise AssertionError("daemonic processes are not allowed to have children")

    monkeypatch.setattr(executors, "start_pool", refuse)
    total, warnings = build_and_sum(str(tmp_path), keys, 2)
    assert len(warnings) == 1
    assert "one process" in warnings[0]
    assert total == pytest.approx(expected_sum(), rel=1e-9)


# --------------------------------------------------------------------------- no worker left behind


def workers_alive() -> list[processes.Child]:
    """This process's children other than the semaphore trackers (they live as long as we do)."""
    return [child for child in processes.children(os.getpid()) if not child.is_tracker]


def interrupted_on_pass(number: int) -> Callable[[], Iterator[pa.RecordBatch]]:
    """Batches whose ``number``-th pass over the data ends in a KeyboardInterrupt part-way."""
    passes = 0

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal passes
        passes += 1
        for index, batch in enumerate(table().to_batches(max_chunksize=2_500)):
            if passes == number and index == 2:
                raise KeyboardInterrupt
            yield batch

    return batches


@pytest.mark.parametrize("number", [1, 2], ids=["profiling", "encrypting"])
def test_no_worker_outlives_an_interrupted_build(keys: KeyPair, tmp_path: Path, number: int) -> None:
    assert workers_alive() == []
    storages = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(tmp_path)}},
    }
    with override_settings(STORAGES=storages), pytest.raises(KeyboardInterrupt):
        encrypt_columns(
            batches=interrupted_on_pass(number),
            schema=SCHEMA,
            rows=ROWS,
            options=StoreOptions(bounds={"x": (0, 100)}, workers=2, quantile_buckets=0),
            keys={"products": keys},
            blob_prefix="he/interrupted",
        )
    assert workers_alive() == []  # closed on the way out, not eventually


def test_workers_closed_before_they_were_waited_for_are_gone(keys: KeyPair) -> None:
    started: list[int] = []

    def interrupt_once_started() -> None:
        with executors.EncryptionWorkers(2, {Level.PRODUCTS: keys.secret_context}):
            started.append(len(workers_alive()))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupt_once_started()
    assert started == [2]
    assert workers_alive() == []


KILLED_PARENT = """
import sys, time
from dataspace.compute.he.executors import EncryptionWorkers
from dataspace.compute.he.keys import generate_keys
with EncryptionWorkers(2, {"products": generate_keys("products").secret_context}) as workers:
    workers.ready()
    print("ready", flush=True)
    time.sleep(600)
"""


def test_workers_end_with_a_killed_parent() -> None:
    """SIGKILL leaves the parent no way to close its pool: the kernel ends the workers."""
    parent = subprocess.Popen([sys.executable, "-c", KILLED_PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "ready"
        spawned = [child.pid for child in processes.children(parent.pid) if "spawn_main" in child.command]
        assert len(spawned) == 2
    finally:
        parent.kill()
        parent.wait()

    def ended(pid: int) -> bool:
        state = processes.state(pid)
        if state == "Z":  # re-parented to this process (a subreaper): reap it
            os.waitpid(pid, os.WNOHANG)
        return state in (None, "Z")

    wait_for(lambda: all(ended(pid) for pid in spawned), timeout=30)
