"""Small stores (at most ``SMALL_MAX_ROWS`` rows): keys of the N = 4096 parameter sets, the layout
that records them (version 4), every total in the sums-level pack, the precision the sets give
(``params``), what they refuse, and the bytes per value they reach. No database."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import tenseal as ts

from dataspace.compute.he import evaluation
from dataspace.compute.he.encryption import encrypt_columns
from dataspace.compute.he.keys import (
    KeyPair,
    context_param_set,
    generate_keys,
    load_public_context,
    load_secret_context,
    store_keys,
)
from dataspace.compute.he.layout import StoreLayout, pack_key
from dataspace.compute.he.operations import OperationRejected, get_operation
from dataspace.compute.he.params import (
    LEVELS,
    PRODUCTS_SMALL,
    SMALL_LEVELS,
    SMALL_MAX_ROWS,
    SUMS_SMALL,
    Level,
    for_store,
)
from dataspace.compute.he.profiling import StoreOptions
from dataspace.compute.he.references import CKKS_RELATIVE_TOLERANCE, SMALL_RING_RELATIVE_TOLERANCE
from dataspace.compute.he.rotation import rotator
from dataspace.compute.he.seeded import seeded_encryptor
from dataspace.compute.he.store import read_series
from dataspace.compute.he.terms import Term
from dataspace.errors import ErrorCode
from dataspace.vault import blobs
from tests.support.he_store import stored_rows
from tests.unit.test_he_operations import CASES, SCHEMA, Built, run, storage_at, synthetic_table
from tests.unit.test_he_packing import ONE_ROW_OPERATIONS, OPTIONS, build

SIZES = [1, 100, 442, SMALL_MAX_ROWS]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Built]:
    return {
        rows: build(store_keys(rows=rows, levels={Level.SUMS}), tmp_path_factory.mktemp(f"small-{rows}"), rows)
        for rows in SIZES
    }


def _numbers(he: Any, ref: Any, path: str = "") -> list[tuple[str, float, float]]:
    """Every released number next to its reference."""
    if isinstance(ref, dict):
        return [n for key in ref for n in _numbers(he[key], ref[key], f"{path}.{key}")]
    if isinstance(ref, list):
        return [n for i, (a, b) in enumerate(zip(he, ref, strict=True)) for n in _numbers(a, b, f"{path}[{i}]")]
    if isinstance(ref, int | float) and not isinstance(ref, bool):
        return [(path, float(he), float(ref))]
    assert he == ref, path
    return []


def _from_totals(built: Built, name: str, params: dict[str, Any]) -> bool:
    """Whether every term of the operation reads packed totals (no product over tails)."""
    operation = get_operation(name)
    terms: list[Term] = operation.terms(operation.validate(params, built.layout), built.layout)
    return all(evaluation.pack_sources(term, built.layout) is not None for term in terms if term.factors)


def test_store_keys_choose_the_small_ring_up_to_its_row_limit() -> None:
    assert {level: pair.param_set for level, pair in store_keys(rows=SMALL_MAX_ROWS).items()} == SMALL_LEVELS
    assert {level: pair.param_set for level, pair in store_keys(rows=SMALL_MAX_ROWS + 1).items()} == {
        Level.PRODUCTS: LEVELS[Level.PRODUCTS]
    }
    for level in Level:
        assert for_store(level, 1) == SMALL_LEVELS[level]
        assert for_store(level, 10_000) == LEVELS[level]
        assert SMALL_LEVELS[level].max_rows == SMALL_MAX_ROWS
        context = load_public_context(store_keys(rows=10, levels={Level.SUMS})[level].public_context)
        assert context_param_set(context, level) == SMALL_LEVELS[level]
        assert context.has_galois_keys()  # rotations work at both small sets
    with pytest.raises(ValueError, match="not of the"):
        generate_keys("sums", PRODUCTS_SMALL)


@pytest.mark.parametrize("rows", SIZES)
def test_every_operation_matches_the_plaintext_reference(stores: dict[int, Built], rows: int) -> None:
    """Within the engine's tolerance where the terms read packed totals (the small sums set holds
    them to ~5e-7 of a normalised value); within the small ring's documented tolerance where a
    product is computed over the tails (rotation error of the small products set, ``params``)."""
    built = stores[rows]
    assert built.layout.params == {Level.SUMS: "sums-4096", Level.PRODUCTS: "products-4096"}
    assert built.layout.slots == 2048
    assert built.layout.chunks == 0
    for name, params in CASES:
        if rows == 1 and name not in ONE_ROW_OPERATIONS:
            continue
        released, reference, _ = run(built, name, params)
        tolerance = CKKS_RELATIVE_TOLERANCE if _from_totals(built, name, params) else SMALL_RING_RELATIVE_TOLERANCE
        for path, he, ref in _numbers(released, reference):
            assert abs(he - ref) <= tolerance * max(1.0, abs(ref)), f"{rows} rows {name}{path}: {he} vs {ref}"


@pytest.mark.parametrize("rows", SIZES)
def test_every_total_sits_unscaled_in_a_sums_level_pack(stores: dict[int, Built], rows: int) -> None:
    layout = stores[rows].layout
    totals = [info.total for info in layout.series.values()] + [p.total for p in layout.products.values()]
    assert all(slot is not None and layout.packs[slot.pack].level == Level.SUMS for slot in totals)
    assert all(pack.total_scale == 1.0 for pack in layout.packs)
    tail_packs = {info.tail.pack for info in layout.series.values() if info.tail is not None}
    for info in layout.series.values():
        assert info.tail is not None
        assert layout.packs[info.tail.pack].level == info.level
    # The products-level packs hold tails only: nothing in them a worker multiplies exceeds 1.
    assert {i for i, p in enumerate(layout.packs) if p.level == Level.PRODUCTS} <= tail_packs


@pytest.mark.parametrize("rows", [100, SMALL_MAX_ROWS])
def test_the_small_sets_precision(stores: dict[int, Built], rows: int) -> None:
    """The bounds the parameters' docstring states, on stored values (normalised units): totals
    within 1e-6 (small sums set, scale 2^30), tails within 1e-4 (small products set, scale 2^25),
    and a count computed over the tails (two rotations, a product) within 0.01 of its integer."""
    built = stores[rows]
    table = built.table
    with storage_at(built.storage):
        w = stored_rows(built.layout, "num:w", built.secret["products"]) * built.layout.column("w").scale
        slot = built.layout.series["num:w"].total
        assert slot is not None
        (pack,) = read_series(built.layout, pack_key(slot.pack))
    assert np.abs(w - table.column("w").to_numpy()).max() / built.layout.column("w").scale < 1e-4
    total = ts.ckks_vector_from(built.secret["sums"], pack).decrypt()[slot.slot]
    assert abs(total - table.column("w").to_numpy().sum() / built.layout.column("w").scale) < 1e-6
    # An undeclared pair: region x grade counts, each a product of two indicators over the tails.
    name, params = "group_by", {"by": "region", "aggregate": "count", "where": {"column": "grade", "equals": "g1"}}
    operation = get_operation(name)
    normalised = operation.validate(params, built.layout)
    with storage_at(built.storage):
        result = operation.compute(normalised, built.layout, built.public, lambda k: read_series(built.layout, k))
    tails = [part for part in result.parts if part.startswith(evaluation.TAIL_PREFIX)]
    assert tails
    grades, regions = table.column("grade").to_pylist(), table.column("region").to_pylist()
    for part in tails:
        index = int(part.removeprefix(evaluation.TAIL_PREFIX).split(".")[0])
        region = ("north", "south", "west")[index]
        raw = math.fsum(ts.ckks_vector_from(built.secret["products"], result.parts[part]).decrypt()[:rows])
        expected = sum(1 for g, r in zip(grades, regions, strict=True) if g == "g1" and r == region)
        assert abs(raw - expected) < 0.01, (part, raw, expected)


def test_the_layout_records_its_sets_and_round_trips(stores: dict[int, Built]) -> None:
    layout = stores[100].layout
    data = json.loads(json.dumps(layout.to_json()))
    assert data["version"] == 4
    assert data["params"] == {"products": "products-4096", "sums": "sums-4096"}
    assert StoreLayout.from_json(data) == layout
    assert layout.param_set(Level.PRODUCTS) == PRODUCTS_SMALL
    assert layout.param_set("sums") == SUMS_SMALL


def test_the_custodian_refuses_contexts_of_another_ring(stores: dict[int, Built]) -> None:
    """A small store's result decrypted with N = 8192 contexts (or the other way round) is refused
    before anything is loaded."""
    built = stores[100]
    name, params = "mean", {"column": "age"}
    operation = get_operation(name)
    normalised = operation.validate(params, built.layout)
    with storage_at(built.storage):
        result = operation.compute(normalised, built.layout, built.public, lambda k: read_series(built.layout, k))
    large = {level: load_secret_context(generate_keys(level).secret_context) for level in ("sums", "products")}
    with pytest.raises(OperationRejected) as caught:
        operation.decrypt(normalised, built.layout, result, large)
    assert caught.value.code == ErrorCode.RESULT_SHAPE_MISMATCH


def test_the_small_sets_refuse_what_they_cannot_hold(tmp_path: Path) -> None:
    table = synthetic_table(SMALL_MAX_ROWS + 1)
    small = store_keys(rows=10, levels={Level.SUMS})

    def encrypt(keys: dict[Level, KeyPair], rows: int, options: StoreOptions = OPTIONS) -> StoreLayout:
        with storage_at(tmp_path):
            return encrypt_columns(
                batches=lambda: iter(table.slice(0, rows).to_batches()),
                schema=SCHEMA,
                rows=rows,
                options=options,
                keys=keys,
                blob_prefix="he/refused",
            )

    with pytest.raises(ValueError, match="capacity"):
        encrypt(small, SMALL_MAX_ROWS + 1)
    with pytest.raises(ValueError, match="packed only"):
        encrypt(small, 10, dataclasses.replace(OPTIONS, pack=False))
    products_only = {Level.PRODUCTS: small[Level.PRODUCTS]}
    with pytest.raises(ValueError, match="sums-level keys"):
        encrypt(products_only, 10, dataclasses.replace(OPTIONS, levels={}))
    mixed = {Level.SUMS: small[Level.SUMS], Level.PRODUCTS: generate_keys("products")}
    with pytest.raises(ValueError, match="slot count"):
        encrypt(mixed, 10)


@pytest.mark.parametrize("level", list(Level))
def test_seeded_vectors_and_rotations_of_the_small_sets(level: Level) -> None:
    keys = generate_keys(level, SMALL_LEVELS[level])
    secret, public = load_secret_context(keys.secret_context), load_public_context(keys.public_context)
    params = SMALL_LEVELS[level]
    encryptor = seeded_encryptor(secret, params)
    assert encryptor is not None
    values = np.random.default_rng(5).uniform(-1, 1, params.slots)
    vector = ts.ckks_vector_from(public, encryptor.encrypt(values.tolist()))
    encryptor.close()
    rotated = rotator(public, params).rotate(vector, 700)
    decrypted = ts.ckks_vector_from(secret, rotated.serialize()).decrypt()
    # Rotation error is the key switch's rounding, ~N / scale: ~1.5e-4 at 2^25, ~5e-6 at 2^30.
    assert np.abs(np.array(decrypted) - np.roll(values, -700)).max() < 5e-4


BENCH_SCHEMA: list[dict[str, Any]] = [
    {"name": "x", "type": "float", "nulls": 0},
    {"name": "s", "type": "float", "nulls": 0},
    {"name": "g", "type": "categorical", "nulls": 0, "cardinality": 8, "categories": [f"g{i}" for i in range(8)]},
]


def test_the_bench_table_at_100_rows_takes_at_most_64_bytes_per_value(tmp_path: Path) -> None:
    """The issue's target at its smallest size: 10 series, 8 product totals, two ciphertexts."""
    rows = 100
    rng = np.random.default_rng(42)
    table = pa.table(
        {
            "x": rng.normal(100, 20, rows),
            "s": rng.uniform(0, 5000, rows),
            "g": np.array([f"g{i}" for i in range(8)])[rng.integers(0, 8, rows)],
        }
    )
    with storage_at(tmp_path):
        layout = encrypt_columns(
            batches=lambda: iter(table.to_batches()),
            schema=BENCH_SCHEMA,
            rows=rows,
            options=StoreOptions(
                levels={"s": Level.SUMS},
                bounds={"x": (0, 200), "s": (0, 5000)},
                quantile_buckets=0,
                workers=1,
                group_by={"g": ["x"]},
            ),
            keys=store_keys(rows=rows, levels={Level.SUMS}),
            blob_prefix="he/bench-small",
        )
        stored = sum(blobs.size(name) for name in layout.blob_names())
    assert (len(layout.series), len(layout.products), len(layout.packs)) == (10, 8, 2)
    assert stored <= 64 * rows * len(layout.series)
