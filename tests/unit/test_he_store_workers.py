"""Encryption worker processes: they start inside a Celery prefork child (a daemonic billiard
process, where the stdlib refuses children), and their absence degrades to one process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import tenseal as ts
from django.conf import settings
from django.test import override_settings

from dataspace.compute.he import store
from dataspace.compute.he.keys import KeyPair, generate_keys, load_secret_context
from dataspace.compute.he.store import StoreOptions, build_store, read_series

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
    logging.getLogger(store.__name__).addHandler(handler)
    storages = {**settings.STORAGES, "default": {**settings.STORAGES["default"], "OPTIONS": {"location": location}}}
    try:
        with override_settings(STORAGES=storages):
            data = table()
            layout = build_store(
                batches=lambda: iter(data.to_batches(max_chunksize=2_500)),
                schema=SCHEMA,
                rows=ROWS,
                options=StoreOptions(workers=workers, quantile_buckets=0),
                keys={"products": keys},
                blob_prefix="he/workers",
            )
            context = load_secret_context(keys.secret_context)
            total = sum(sum(ts.ckks_vector_from(context, chunk).decrypt()) for chunk in read_series(layout, "num:x"))
            return total * layout.column("x").scale, warnings
    finally:
        logging.getLogger(store.__name__).removeHandler(handler)


@pytest.fixture(scope="module")
def keys() -> KeyPair:
    return generate_keys("products")


def expected_sum() -> float:
    return float(np.arange(ROWS).sum() / 100)


def test_two_workers_start_inside_a_celery_prefork_child(keys: KeyPair, tmp_path: Path) -> None:
    import billiard

    pool: Any = billiard.Pool(1)  # Celery's prefork pool: daemonic children
    try:
        total, warnings = pool.apply(build_and_sum, (str(tmp_path), keys, 2))
    finally:
        pool.terminate()
        pool.join()
    assert warnings == []  # no fallback: the billiard pool started
    assert total == pytest.approx(expected_sum(), rel=1e-9)


def test_a_pool_that_cannot_start_falls_back_to_one_process(
    keys: KeyPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(workers: int, secret_contexts: dict[str, bytes]) -> Any:
        raise AssertionError("daemonic processes are not allowed to have children")

    monkeypatch.setattr(store, "_start_pool", refuse)
    total, warnings = build_and_sum(str(tmp_path), keys, 2)
    assert len(warnings) == 1
    assert "one process" in warnings[0]
    assert total == pytest.approx(expected_sum(), rel=1e-9)
