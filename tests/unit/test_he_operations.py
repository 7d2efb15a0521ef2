"""The HE engine end to end on a synthetic table: every operation against its plaintext reference,
every refusal code, the store's framing and the layout round trip. No database.

The main store is a personal dataset's: most bounds declared, the rest (and most bucket edges)
estimated privately. Bounds, clamping, cohorts, the cells of a bucketed column and the custodian's
shape check have their own stores and tests in ``test_he_privacy``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from django.conf import settings
from django.test import override_settings

from dataspace.compute.he.encryption import encrypt_columns
from dataspace.compute.he.framing import MAGIC
from dataspace.compute.he.keys import KeyPair, generate_keys, load_public_context, load_secret_context
from dataspace.compute.he.layout import PRODUCT_PREFIX, StoreLayout, product_key, total_key
from dataspace.compute.he.operations import (
    REGISTRY,
    EncryptedResult,
    OperationRejected,
    get_operation,
)
from dataspace.compute.he.profiling import StoreOptions, plan_columns
from dataspace.compute.he.references import CKKS_RELATIVE_TOLERANCE
from dataspace.compute.he.store import delete_store, read_series
from dataspace.compute.he.view import public_view
from dataspace.errors import ErrorCode
from dataspace.operation_names import HE_OPERATION_NAMES, OperationName
from dataspace.vault import blobs

ROWS = 20_000

SCHEMA: list[dict[str, Any]] = [
    {"name": "age", "type": "float", "nulls": 1},
    {"name": "w", "type": "float", "nulls": 0},
    {"name": "z", "type": "float", "nulls": 0},
    {"name": "y", "type": "float", "nulls": 0},
    {"name": "visits", "type": "integer", "nulls": 0},
    {"name": "smoker", "type": "boolean", "nulls": 0},
    {"name": "region", "type": "categorical", "nulls": 0, "cardinality": 3, "categories": ["north", "south", "west"]},
    {"name": "grade", "type": "categorical", "nulls": 5, "cardinality": 8, "categories": [f"g{i}" for i in range(8)]},
    {"name": "note", "type": "text", "nulls": 0},
]
OPTIONS = StoreOptions(
    levels={"visits": "sums"},
    buckets={"age": [0, 20, 40, 60, 80, 100]},
    bounds={"age": (0, 100), "w": (-5, 5), "y": (-20, 20), "visits": (0, 1000)},
    estimate_bounds_rho=1.0,  # z's bounds, and the edges of w, z, y and visits
    workers=2,
    group_by={"grade": ["age"]},  # age has nulls and zeros: values, presence and contributors
    # This module's store is the version-2 layout (one ciphertext per total, padded last chunks):
    # stores written before packing still compute. ``test_he_packing`` covers packed stores.
    pack=False,
)


def synthetic_table(rows: int = ROWS, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(50, 15, rows), 0, 99.5)
    age_missing = rng.random(rows) < 0.1
    w = rng.uniform(-5, 5, rows)
    z = rng.normal(10, 3, rows)
    y = 3 + 1.5 * w - 0.7 * z + rng.normal(0, 1, rows)
    grade = rng.choice([f"g{i}" for i in range(8)], rows).astype(object)
    grade[rng.random(rows) < 0.02] = None
    return pa.table(
        {
            "age": pa.array(np.where(age_missing, np.nan, age), from_pandas=True),
            "w": w,
            "z": z,
            "y": y,
            "visits": rng.integers(0, 1000, rows),
            "smoker": rng.random(rows) < 0.3,
            "region": rng.choice(["north", "south", "west"], rows, p=[0.5, 0.3, 0.2]),
            "grade": pa.array(list(grade), type=pa.string()),
            "note": pa.array(["free text"] * rows),
        }
    )


@dataclass
class Built:
    table: pa.Table
    layout: StoreLayout
    keys: dict[str, KeyPair]
    public: dict[str, Any]
    secret: dict[str, Any]
    storage: Path


@contextmanager
def storage_at(path: Path) -> Iterator[None]:
    storages = {**settings.STORAGES, "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(path)}}}
    with override_settings(STORAGES=storages):
        yield


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    table = synthetic_table()
    keys = {level: generate_keys(level) for level in ("sums", "products")}
    storage = tmp_path_factory.mktemp("he-store")
    with storage_at(storage):
        layout = encrypt_columns(
            batches=lambda: iter(table.to_batches(max_chunksize=3_000)),
            schema=SCHEMA,
            rows=table.num_rows,
            options=OPTIONS,
            keys=keys,
            blob_prefix="he/test",
        )
    return Built(
        table=table,
        layout=layout,
        keys=keys,
        public={level: load_public_context(pair.public_context) for level, pair in keys.items()},
        secret={level: load_secret_context(pair.secret_context) for level, pair in keys.items()},
        storage=storage,
    )


def run(
    built: Built, name: str, params: dict[str, Any], layout: StoreLayout | None = None, reads: list[str] | None = None
) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    layout = layout or built.layout
    operation = get_operation(name)
    normalised = operation.validate(params, layout)

    def read(key: str) -> Iterator[bytes]:
        if reads is not None:
            reads.append(key)
        return read_series(layout, key)

    with storage_at(built.storage):
        result = operation.compute(normalised, layout, built.public, read)
    # The custodian receives bytes: go through them.
    result = EncryptedResult.from_bytes(result.to_bytes())
    aggregates = operation.decrypt(normalised, layout, result, built.secret)
    released = operation.finish(normalised, layout, {a.name: a.value for a in aggregates})
    return released, operation.reference(normalised, built.table), aggregates


def without_totals(layout: StoreLayout) -> StoreLayout:
    """The layout as written before totals existed: its JSON has no total fields (nor products)."""
    data = without_products(layout).to_json()
    for info in data["series"].values():
        del info["total_blob"], info["total_sha256"]
    return StoreLayout.from_json(data)


def without_products(layout: StoreLayout) -> StoreLayout:
    """The layout as written before product totals existed, or with no group-by declared."""
    data = json.loads(json.dumps(layout.to_json()))
    del data["products"]
    return StoreLayout.from_json(data)


def assert_close(he: Any, ref: Any, path: str = "") -> None:
    if isinstance(ref, dict):
        assert isinstance(he, dict), path
        assert set(he) == set(ref), path
        for key in ref:
            assert_close(he[key], ref[key], f"{path}.{key}")
    elif isinstance(ref, list):
        assert isinstance(he, list), path
        assert len(he) == len(ref), path
        for index, (a, b) in enumerate(zip(he, ref, strict=True)):
            assert_close(a, b, f"{path}[{index}]")
    elif isinstance(ref, int | float) and not isinstance(ref, bool):
        assert isinstance(he, int | float), path
        assert abs(he - ref) <= CKKS_RELATIVE_TOLERANCE * max(1.0, abs(ref)), f"{path}: he {he} vs reference {ref}"
    else:
        assert he == ref, path


CASES: list[tuple[str, dict[str, Any]]] = [
    ("count", {}),
    ("count", {"where": {"column": "region", "equals": "south"}}),
    ("count", {"where": {"column": "age", "bucket_from": 1, "bucket_to": 3}}),
    ("sum", {"column": "y"}),
    ("sum", {"column": "visits"}),
    ("sum", {"column": "age", "where": {"column": "grade", "equals": "g3"}}),
    ("mean", {"column": "age"}),
    ("mean", {"column": "smoker"}),
    ("mean", {"column": "visits"}),
    ("mean", {"column": "w", "where": {"column": "age", "bucket_from": 2, "bucket_to": 4}}),
    ("mean", {"column": "age", "where": {"column": "region", "equals": "west"}}),
    ("variance", {"column": "age"}),
    ("variance", {"column": "z"}),
    ("group_by", {"by": "region", "aggregate": "count"}),
    ("group_by", {"by": "grade", "aggregate": "mean", "column": "age"}),
    ("group_by", {"by": "grade", "aggregate": "sum", "column": "y"}),
    ("group_by", {"by": "region", "aggregate": "count", "where": {"column": "grade", "equals": "g1"}}),
    ("histogram", {"column": "age"}),
    ("histogram", {"column": "z"}),
    ("histogram", {"column": "y", "where": {"column": "region", "equals": "north"}}),
    ("covariance", {"columns": ["w", "z", "y"]}),
    ("linear_regression", {"target": "y", "features": ["w", "z"]}),
]


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_operation_matches_plaintext_reference(built: Built, name: str, params: dict[str, Any]) -> None:
    released, reference, aggregates = run(built, name, params)
    assert_close(released, reference)
    names = {a.name for a in aggregates}
    for aggregate in aggregates:
        assert aggregate.cohort in names  # every number names its cohort's count
        assert aggregate.sensitivity > 0


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_a_layout_without_totals_streams_the_chunks_to_the_same_result(
    built: Built, name: str, params: dict[str, Any]
) -> None:
    old = without_totals(built.layout)
    assert all(info.total_blob is None for info in old.series.values())
    reads: list[str] = []
    released_old, reference, aggregates_old = run(built, name, params, layout=old, reads=reads)
    assert not any(key.startswith("total:") for key in reads)
    assert_close(released_old, reference)
    _, _, aggregates = run(built, name, params)
    assert [a.name for a in aggregates] == [a.name for a in aggregates_old]
    for new, previous in zip(aggregates, aggregates_old, strict=True):
        # Before rounding: the two paths differ by CKKS noise only (a count not at all).
        assert abs(new.value - previous.value) <= 1e-6 * max(1.0, abs(previous.value)), new.name


def test_unfiltered_depth_zero_terms_read_one_total_per_series(built: Built) -> None:
    reads: list[str] = []
    # The sum, a null-aware count, and the sum's contributors (some ages are 0: not the count).
    assert built.layout.column("age").zeros
    run(built, "mean", {"column": "age"}, reads=reads)
    assert sorted(reads) == [total_key("nonzero:age"), total_key("num:age"), total_key("present:age")]
    reads.clear()
    run(built, "histogram", {"column": "age"}, reads=reads)
    cells = ["above:age", "below:age", *(f"bucket:age:{i}" for i in range(5)), "null:age"]
    assert sorted(reads) == [total_key(cell) for cell in cells]
    reads.clear()
    # A bucket-range filter is a sum of indicator series: its count is a sum of their totals.
    run(built, "count", {"where": {"column": "age", "bucket_from": 1, "bucket_to": 3}}, reads=reads)
    assert sorted(reads) == [total_key(f"bucket:age:{i}") for i in (1, 2, 3)]
    reads.clear()
    # The sum comes from the total, the sum of squares (a product) streams the chunks.
    run(built, "variance", {"column": "z"}, reads=reads)
    assert sorted(reads) == ["num:z", total_key("num:z")]
    reads.clear()
    # Filtered: the sum is a product and streams; the filter's count is the category's total.
    run(built, "mean", {"column": "w", "where": {"column": "region", "equals": "west"}}, reads=reads)
    assert sorted(reads) == ["cat:region:2", "num:w", total_key("cat:region:2")]


def test_a_declared_group_by_reads_one_product_total_per_term(built: Built) -> None:
    reads: list[str] = []
    run(built, "group_by", {"by": "grade", "aggregate": "mean", "column": "age"}, reads=reads)
    # Each group's sum (age x grade), count (present x grade) and contributors (nonzero x grade).
    series = ("num:age", "present:age", "nonzero:age")
    assert sorted(reads) == sorted(product_key(a, f"cat:grade:{i}") for a in series for i in range(8))
    assert len(built.layout.products) == 24
    reads.clear()
    # An undeclared pair streams the chunks as before.
    run(built, "group_by", {"by": "grade", "aggregate": "sum", "column": "y"}, reads=reads)
    assert "num:y" in reads
    assert not any(key.startswith(PRODUCT_PREFIX) for key in reads)


@pytest.mark.parametrize(
    "params",
    [
        {"by": "grade", "aggregate": "mean", "column": "age"},
        {"by": "grade", "aggregate": "sum", "column": "age"},
        {"by": "grade", "aggregate": "count"},
    ],
)
def test_declared_and_streamed_group_by_release_the_same(built: Built, params: dict[str, Any]) -> None:
    streamed = without_products(built.layout)
    released, reference, aggregates = run(built, "group_by", params)
    released_old, _, aggregates_old = run(built, "group_by", params, layout=streamed)
    assert_close(released, reference)
    assert_close(released_old, reference)
    assert [a.name for a in aggregates] == [a.name for a in aggregates_old]
    for new, previous in zip(aggregates, aggregates_old, strict=True):
        # The same terms, sensitivities and cohorts; values differ by CKKS noise only.
        assert (new.sensitivity, new.cohort, new.cohorts) == (previous.sensitivity, previous.cohort, previous.cohorts)
        assert abs(new.value - previous.value) <= 1e-6 * max(1.0, abs(previous.value)), new.name


def test_product_totals_are_framed_and_hashed_one_ciphertext_each(built: Built) -> None:
    import tenseal as ts

    table = built.table
    age = np.asarray(table.column("age").to_pylist(), dtype=float)
    grade = np.asarray(table.column("grade").to_pylist(), dtype=object)
    plan = built.layout.column("age")
    with storage_at(built.storage):
        for key, product in built.layout.products.items():
            assert product.blob_name.endswith(".ptot")
            assert product.level == "products"
            with blobs.open_for_read(product.blob_name) as source:
                assert hashlib.sha256(source.read()).hexdigest() == product.sha256
            assert len(list(read_series(built.layout, key))) == 1
        (chunk,) = read_series(built.layout, product_key("num:age", "cat:grade:3"))
    expected = np.nansum(np.where(grade == "g3", np.clip(age, 0, 100), 0.0)) / plan.scale
    assert ts.ckks_vector_from(built.secret["products"], chunk).decrypt()[0] == pytest.approx(expected, abs=1e-3)
    with pytest.raises(KeyError):
        next(read_series(built.layout, product_key("num:y", "cat:grade:0")))


@pytest.mark.parametrize(
    ("group_by", "message"),
    [
        ({"region": ["visits"]}, "stored for sums only"),
        ({"age": ["w"]}, "not an encrypted categorical column"),
        ({"region": ["note"]}, "not an encrypted numeric column"),
    ],
)
def test_build_refuses_a_group_by_it_cannot_prepare(built: Built, group_by: dict[str, list[str]], message: str) -> None:
    options = dataclasses.replace(OPTIONS, group_by=group_by)
    with pytest.raises(ValueError, match=message):
        plan_columns(SCHEMA, options, built.keys)


def test_totals_are_framed_and_hashed_one_ciphertext_each(built: Built) -> None:
    with storage_at(built.storage):
        for key, info in built.layout.series.items():
            assert info.total_blob == info.blob_name.removesuffix(".ct") + ".tot"
            with blobs.open_for_read(info.total_blob) as source:
                data = source.read()
            assert data.startswith(MAGIC)
            assert hashlib.sha256(data).hexdigest() == info.total_sha256
            assert len(list(read_series(built.layout, total_key(key)))) == 1
        total = built.secret["products"]
        (chunk,) = read_series(built.layout, total_key("cat:region:0"))
    import tenseal as ts

    north = int((np.asarray(built.table.column("region").to_pylist()) == "north").sum())
    assert ts.ckks_vector_from(total, chunk).decrypt()[0] == pytest.approx(north, abs=1e-3)
    with pytest.raises(KeyError):
        next(read_series(without_totals(built.layout), total_key("num:w")))


def test_every_registered_operation_is_covered() -> None:
    assert {name for name, _ in CASES} == set(REGISTRY)


def test_the_registry_implements_exactly_the_operation_names() -> None:
    # ISSUE-13: every operation name but the TEE engine's "algorithm".
    assert set(REGISTRY) == HE_OPERATION_NAMES == set(OperationName) - {OperationName.ALGORITHM}
    assert all(name == operation.name for name, operation in REGISTRY.items())


def test_regression_recovers_the_generating_coefficients(built: Built) -> None:
    released, _, _ = run(built, "linear_regression", {"target": "y", "features": ["w", "z"]})
    assert released["coefficients"]["w"] == pytest.approx(1.5, abs=0.02)
    assert released["coefficients"]["z"] == pytest.approx(-0.7, abs=0.02)
    assert released["intercept"] == pytest.approx(3, abs=0.1)


def test_sensitivities_follow_the_declared_bounds_not_the_scale(built: Built) -> None:
    _, _, aggregates = run(built, "variance", {"column": "age"})
    by_name = {a.name: a for a in aggregates}
    assert built.layout.column("age").bounds == (0, 100)
    assert built.layout.column("age").scale == 128  # the power of two above the bounds, not the data's 99.5
    assert by_name["sum"].sensitivity == by_name["sum"].l2_sensitivity == 100
    assert by_name["sum_sq"].sensitivity == by_name["sum_sq"].l2_sensitivity == 100 * 100
    assert by_name["count"].sensitivity == 1
    # The sum's cohort counts the rows that move it: present and non-zero (a few ages are 0).
    assert by_name["sum"].cohort == by_name["sum_sq"].cohort == "sum.cohort0"
    table_age = built.table.column("age").to_numpy(zero_copy_only=False)
    assert by_name["sum.cohort0"].value == int(((table_age != 0) & ~np.isnan(table_age)).sum())
    assert by_name["count"].value == int((~np.isnan(table_age)).sum())


def test_unfiltered_count_on_a_complete_column_is_the_exact_row_count(built: Built) -> None:
    released, _, aggregates = run(built, "mean", {"column": "w"})
    assert released["count"] == ROWS
    assert {a.name: a.value for a in aggregates}["count"] == ROWS


def test_homomorphic_counts_decrypt_to_integers(built: Built) -> None:
    _, _, aggregates = run(built, "group_by", {"by": "grade", "aggregate": "mean", "column": "age"})
    counts = [a.value for a in aggregates if a.name.endswith(".count")]
    assert len(counts) == 8
    assert all(float(c).is_integer() for c in counts)


def test_finish_rounds_to_the_operation_precision(built: Built) -> None:
    operation = get_operation("mean")
    params = operation.validate({"column": "w"}, built.layout)
    released = operation.finish(params, built.layout, {"sum": 1234.56789123, "count": 3.0})
    assert released == {"mean": 411.523, "count": 3.0}


def rejection(built: Built, name: str, params: Any) -> str:
    with pytest.raises(OperationRejected) as caught:
        get_operation(name).validate(params, built.layout)
    assert str(caught.value)
    assert isinstance(caught.value.code, ErrorCode)
    return caught.value.code


def test_unknown_operation_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(OperationRejected) as caught:
        get_operation("median")
    assert caught.value.code == "unknown_operation"
    assert "linear_regression" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("sum", {}),
        ("sum", {"column": "y", "bogus": 1}),
        ("sum", []),
        ("count", {"where": {"column": "region", "equals": "east"}}),
        ("count", {"where": {"column": "age", "bucket_from": 3, "bucket_to": 9}}),
        ("count", {"where": {"column": "age", "bucket_from": 2, "bucket_to": 1}}),
        ("group_by", {"by": "region", "aggregate": "median", "column": "y"}),
        ("group_by", {"by": "region", "aggregate": "mean"}),
        ("covariance", {"columns": ["w"]}),
        ("covariance", {"columns": ["w", "w"]}),
        ("linear_regression", {"target": "y", "features": []}),
        ("linear_regression", {"target": "y", "features": ["y", "w"]}),
    ],
)
def test_malformed_parameters_are_refused(built: Built, name: str, params: Any) -> None:
    assert rejection(built, name, params) == "invalid_parameters"


def test_missing_column_is_refused(built: Built) -> None:
    assert rejection(built, "mean", {"column": "income"}) == "column_not_found"
    assert rejection(built, "count", {"where": {"column": "income", "equals": "x"}}) == "column_not_found"
    # Text columns are not encrypted at all.
    assert rejection(built, "group_by", {"by": "note", "aggregate": "count"}) == "column_not_found"


def test_wrong_column_kind_is_refused(built: Built) -> None:
    assert rejection(built, "sum", {"column": "region"}) == "column_kind"
    assert rejection(built, "group_by", {"by": "age", "aggregate": "count"}) == "column_kind"
    assert rejection(built, "histogram", {"column": "smoker"}) == "column_kind"  # booleans have no buckets


def test_sums_level_column_is_refused_in_a_product(built: Built) -> None:
    assert rejection(built, "variance", {"column": "visits"}) == "level_too_low"
    assert rejection(built, "group_by", {"by": "region", "aggregate": "mean", "column": "visits"}) == "level_too_low"
    assert rejection(built, "covariance", {"columns": ["w", "visits"]}) == "level_too_low"
    where = {"column": "region", "equals": "north"}
    assert rejection(built, "sum", {"column": "visits", "where": where}) == "level_too_low"
    # Depth 0 on the same column is fine.
    assert get_operation("sum").validate({"column": "visits"}, built.layout) == {
        "column": "visits",
        "bounds": {"visits": [0.0, 1000.0]},  # what the answer was clamped to: the reference clamps with it
    }


def test_depth_two_is_refused(built: Built) -> None:
    where = {"column": "region", "equals": "north"}
    assert rejection(built, "variance", {"column": "z", "where": where}) == "depth_exceeded"
    assert rejection(built, "covariance", {"columns": ["w", "z"], "where": where}) == "depth_exceeded"
    assert rejection(built, "group_by", {"by": "grade", "aggregate": "sum", "column": "y", "where": where}) == (
        "depth_exceeded"
    )
    assert get_operation("variance").required_depth({"column": "z", "where": where}, built.layout) == 2


def test_columns_with_nulls_are_refused_where_rows_must_be_complete(built: Built) -> None:
    assert rejection(built, "covariance", {"columns": ["w", "age"]}) == "incomplete_column"
    assert rejection(built, "linear_regression", {"target": "age", "features": ["w"]}) == "incomplete_column"


def test_validation_is_idempotent(built: Built) -> None:
    for name, params in CASES:
        operation = get_operation(name)
        once = operation.validate(params, built.layout)
        assert operation.validate(once, built.layout) == once


def test_public_context_holds_no_secret_and_cannot_decrypt(built: Built) -> None:
    import tenseal as ts

    for level, pair in built.keys.items():
        public = load_public_context(pair.public_context)
        assert public.is_private() is False
        assert not public.auto_relin  # products stay size 3: a relinearisation costs ~6x the product
        assert not public.auto_rescale
        assert public.has_galois_keys()
        vector = ts.ckks_vector(built.secret[level], [1.0, 2.0])
        on_worker = ts.ckks_vector_from(public, vector.serialize())
        with pytest.raises(ValueError, match="secret"):
            on_worker.decrypt()
        with pytest.raises(ValueError):
            load_public_context(pair.secret_context)
        with pytest.raises(ValueError):
            load_secret_context(pair.public_context)


def test_compute_refuses_secret_contexts(built: Built) -> None:
    operation = get_operation("count")
    with pytest.raises(ValueError, match="public"):
        operation.compute({}, built.layout, built.secret, lambda key: iter(()))


def test_layout_round_trips_through_json(built: Built) -> None:
    data = json.loads(json.dumps(built.layout.to_json()))
    assert StoreLayout.from_json(data) == built.layout
    old = without_totals(built.layout)
    assert StoreLayout.from_json(json.loads(json.dumps(old.to_json()))) == old
    assert old.series["num:w"] == dataclasses.replace(built.layout.series["num:w"], total_blob=None, total_sha256=None)


def test_layout_plans_every_encryptable_column(built: Built) -> None:
    layout = built.layout
    assert [c.name for c in layout.columns] == ["age", "w", "z", "y", "visits", "smoker", "region", "grade"]
    assert layout.levels() == {"sums", "products"}
    assert layout.column("age").has_nulls
    assert not layout.column("w").has_nulls
    assert layout.column("age").bucket_edges == (0, 20, 40, 60, 80, 100)
    assert layout.column("grade").categories == tuple(f"g{i}" for i in range(8))
    edges = layout.column("z").bucket_edges
    assert 2 <= len(edges) <= 9
    assert list(edges) == sorted(set(edges))
    assert all(float(f"{e:.3g}") == e for e in edges)  # 3 significant digits
    assert layout.column("smoker").scale == 1
    assert layout.column("visits").scale == 1024
    assert set(layout.series) == {key for plan in layout.columns for key in plan.series_keys}
    with pytest.raises(KeyError):
        layout.column("note")


def test_public_view_shows_no_scales(built: Built) -> None:
    view = public_view(built.layout)
    assert "scale" not in repr(view)
    region = next(c for c in view if c["name"] == "region")
    assert region["categories"] == ["north", "south", "west"]
    visits = next(c for c in view if c["name"] == "visits")
    assert visits["level"] == "sums"
    assert "sum.column" in visits["operations"]
    assert "variance.column" not in visits["operations"]


def test_estimated_bounds_and_edges_are_shown_whole(built: Built) -> None:
    """Private estimates (here: all of z's, the edges of w) are differentially private releases:
    shown as they are, with the rho each cost; the provider's own are shown too."""
    z = built.layout.column("z")
    assert (z.bounds_source, z.edges_source) == ("estimated", "estimated")
    assert not z.open_ends
    assert z.bucket_edges[0] == z.bounds[0]
    assert z.bucket_edges[-1] == z.bounds[1]
    view = {c["name"]: c for c in public_view(built.layout)}
    assert view["z"]["bucket_edges"] == list(z.bucket_edges)
    assert z.bounds is not None
    assert view["z"]["bounds"] == list(z.bounds)
    assert view["z"]["buckets"] == ["below", *range(len(z.bucket_edges) - 1), "above"]
    assert view["age"]["bucket_edges"] == [0, 20, 40, 60, 80, 100]
    assert view["age"]["bounds"] == [0, 100]
    assert (built.layout.column("w").bounds_source, built.layout.column("w").edges_source) == ("declared", "estimated")
    spent = {plan.name: plan.rho for plan in built.layout.columns if plan.rho}
    assert set(spent) == {"w", "z", "y", "visits"}  # one release each, the option shared evenly
    assert all(0 < rho <= 0.25 for rho in spent.values())
    assert built.layout.rho_spent == pytest.approx(1.0)
    assert built.layout.to_json()["rho_spent"] == built.layout.rho_spent


def test_series_blobs_are_framed_and_hashed(built: Built) -> None:
    chunks = math.ceil(ROWS / built.layout.slots)
    with storage_at(built.storage):
        for info in built.layout.series.values():
            assert info.chunks == chunks
            with blobs.open_for_read(info.blob_name) as source:
                data = source.read()
            assert data.startswith(MAGIC)
            assert hashlib.sha256(data).hexdigest() == info.sha256
            assert info.blob_name.startswith("he/test/")
            assert info.blob_name.endswith(".ct")
        assert len(list(read_series(built.layout, "num:age"))) == chunks


def test_read_series_refuses_a_truncated_blob(built: Built, isolated_vault: Path) -> None:
    info = built.layout.series["num:w"]
    with storage_at(built.storage), blobs.open_for_read(info.blob_name) as source:
        data = source.read()
    with blobs.open_for_write(info.blob_name) as sink:
        sink.write(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        list(read_series(built.layout, "num:w"))


def test_encrypted_result_round_trips_and_digests_canonically() -> None:
    result = EncryptedResult(parts={"b": b"\x01\x02", "a": b"xyz"}, folded={"b": False, "a": True})
    again = EncryptedResult.from_bytes(result.to_bytes())
    assert again == result
    assert again.digest() == result.digest()
    flipped = EncryptedResult(parts=result.parts, folded={"b": True, "a": True})
    assert flipped.digest() != result.digest()


@pytest.mark.parametrize("pack", [False, True], ids=["version2", "packed"])
def test_delete_store_removes_every_series(built: Built, pack: bool) -> None:
    table = synthetic_table(rows=5_000, seed=3)
    schema = [c for c in SCHEMA if c["name"] in ("w", "region")]
    layout = encrypt_columns(
        batches=lambda: iter(table.select(["w", "region"]).to_batches(max_chunksize=1_000)),
        schema=schema,
        rows=5_000,
        options=StoreOptions(bounds={"w": (-5, 5)}, workers=1, group_by={"region": ["w"]}, pack=pack),
        keys={"products": built.keys["products"]},
        blob_prefix="he/small",
    )
    names = layout.blob_names()
    assert len(layout.products) == 3
    # Series (and version 2: their totals and the product totals) or series and packs.
    assert len(names) == (len(layout.series) + 1 if pack else 2 * len(layout.series) + 3)
    assert all(blobs.exists(name) for name in names)
    delete_store(layout)
    assert not any(blobs.exists(name) for name in names)


def test_build_refuses_a_level_without_keys(built: Built) -> None:
    table = synthetic_table(rows=100)
    with pytest.raises(ValueError, match="sums"):
        encrypt_columns(
            batches=lambda: iter(table.to_batches()),
            schema=SCHEMA,
            rows=100,
            options=OPTIONS,
            keys={"products": built.keys["products"]},
            blob_prefix="he/nokeys",
        )


def test_build_refuses_a_row_count_that_does_not_match(built: Built) -> None:
    table = synthetic_table(rows=100).select(["w"])
    with pytest.raises(ValueError, match="rows"):
        encrypt_columns(
            batches=lambda: iter(table.to_batches()),
            schema=[SCHEMA[1]],
            rows=101,
            options=StoreOptions(bounds={"w": (-5, 5)}, workers=1),
            keys={"products": built.keys["products"]},
            blob_prefix="he/rows",
        )
    assert not blobs.exists("he/rows/num.w.ct")
    assert not blobs.exists("he/rows/num.w.tot")
