"""Answers that give no one away (issue 11), on the HE engine: values clamped to declared bounds,
sensitivities from the bounds, cohorts that count contributors (a rare 0/1 feature names a cohort
of 1), cells that hold every row once, columns without bounds never summed, exact bounds and edges
only on a non-personal dataset, layouts written before bounds, and the custodian's check of an
encrypted result's shape. No database."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import tenseal as ts

from dataspace.compute import custody
from dataspace.compute.he import estimation
from dataspace.compute.he.encryption import encrypt_columns
from dataspace.compute.he.keys import generate_keys, load_public_context, load_secret_context
from dataspace.compute.he.layout import StoreLayout
from dataspace.compute.he.operations import EncryptedResult, OperationRejected, get_operation
from dataspace.compute.he.profiling import StoreOptions
from dataspace.compute.he.store import read_series
from dataspace.compute.he.view import public_view
from dataspace.errors import ErrorCode
from tests.support.he_store import stored_rows
from tests.unit.test_he_operations import SCHEMA as MAIN_SCHEMA
from tests.unit.test_he_operations import Built, assert_close, run, storage_at, synthetic_table

ROWS = 3_000
SCHEMA: list[dict[str, Any]] = [
    {"name": "y", "type": "float", "nulls": 0},
    {"name": "b", "type": "float", "nulls": 1},
    {"name": "rare", "type": "boolean", "nulls": 0},
    {"name": "flag", "type": "integer", "nulls": 0},
    {"name": "u", "type": "float", "nulls": 0},
    {"name": "g", "type": "categorical", "nulls": 0, "cardinality": 2, "categories": ["a", "b"]},
]
# A personal dataset whose provider declared some bounds and edges; nothing may be estimated.
OPTIONS = StoreOptions(
    bounds={"y": (-5, 5), "b": (0, 100), "flag": (0, 1)},
    buckets={"b": [20, 40, 60, 80], "y": [-1, 0, 1]},
    workers=1,
)
RARE_ROW, FLAG_ZERO_ROW = 5, 7


def small_table() -> pa.Table:
    rng = np.random.default_rng(11)
    b = rng.normal(60, 30, ROWS)  # well outside [0, 100] on both sides, more above
    b[rng.random(ROWS) < 0.05] = np.nan
    rare = np.zeros(ROWS, dtype=bool)
    rare[RARE_ROW] = True
    flag = np.ones(ROWS, dtype=np.int64)
    flag[FLAG_ZERO_ROW] = 0
    return pa.table(
        {
            "y": rng.normal(0, 1, ROWS),  # inside its bounds: a legacy layout clamps nothing
            "b": pa.array(b, from_pandas=True),
            "rare": rare,
            "flag": flag,
            "u": rng.normal(0, 1, ROWS),
            "g": rng.choice(["a", "b"], ROWS),
        }
    )


def build(
    tmp_path_factory: pytest.TempPathFactory, table: pa.Table, schema: list[dict[str, Any]], options: StoreOptions
) -> Built:
    keys = {level: generate_keys(level) for level in ("sums", "products")}
    storage = tmp_path_factory.mktemp("he-privacy")
    with storage_at(storage):
        layout = encrypt_columns(
            batches=lambda: iter(table.to_batches(max_chunksize=1_000)),
            schema=schema,
            rows=table.num_rows,
            options=options,
            keys=keys,
            blob_prefix="he/privacy",
        )
    return Built(
        table=table,
        layout=layout,
        keys=keys,
        public={level: load_public_context(pair.public_context) for level, pair in keys.items()},
        secret={level: load_secret_context(pair.secret_context) for level, pair in keys.items()},
        storage=storage,
    )


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory, small_table(), SCHEMA, OPTIONS)


@pytest.fixture(scope="module")
def small_v2(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The same store as written before packing (layout version 2, full ciphertexts): a part per
    term, which the shape checks below take apart; a packed store's parts are checked in
    ``test_he_packing``. Also the store the version-1 layouts below read."""
    return build(tmp_path_factory, small_table(), SCHEMA, replace(OPTIONS, pack=False, seeded=False))


@pytest.fixture(scope="module")
def exact(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A non-personal dataset: exact bounds and quantile edges where the provider declared none."""
    table = synthetic_table(rows=3_000, seed=5).select(["age", "z", "region"])
    schema = [c for c in MAIN_SCHEMA if c["name"] in ("age", "z", "region")]
    options = StoreOptions(buckets={"age": [0, 20, 40, 60, 80, 100]}, non_personal=True, workers=1)
    return build(tmp_path_factory, table, schema, options)


def aggregates_of(built: Built, name: str, params: dict[str, Any]) -> dict[str, Any]:
    return {a.name: a for a in run(built, name, params)[2]}


def refusal(built: Built, name: str, params: dict[str, Any]) -> str:
    with pytest.raises(OperationRejected) as caught:
        get_operation(name).validate(params, built.layout)
    return str(caught.value.code)


# ---------------------------------------------------------------- bounds and clamping


def test_values_are_clamped_to_the_declared_bounds_before_encryption(small: Built) -> None:
    b = small.layout.column("b")
    assert (b.bounds, b.bounds_source) == ((0, 100), "declared")
    raw = small.table.column("b").to_numpy(zero_copy_only=False)
    assert np.nanmax(raw) > 128
    assert np.nanmin(raw) < 0
    assert b.scale == 128  # from the bounds; the data's max would have made it 256
    with storage_at(small.storage):
        stored = stored_rows(small.layout, "num:b", small.secret["products"])
    assert len(stored) == ROWS
    assert stored.min() > -1e-6
    assert stored.max() < 100 / 128 + 1e-6
    released, reference, _ = run(small, "sum", {"column": "b"})
    assert_close(released, reference)
    assert released["sum"] == pytest.approx(np.nansum(np.clip(raw, 0, 100)), rel=1e-5)
    assert abs(released["sum"] - np.nansum(raw)) > 1_000


def test_sensitivities_come_from_the_bounds(small: Built) -> None:
    by_name = aggregates_of(small, "linear_regression", {"target": "y", "features": ["rare"]})
    assert by_name["count"].sensitivity == 1
    assert by_name["sum.0"].sensitivity == 1  # rare in [0, 1]
    assert by_name["prod.0.1"].sensitivity == 5  # rare * y: 1 * max(|-5|, |5|)
    assert by_name["prod.1.1"].sensitivity == 25  # y^2
    assert all(a.l2_sensitivity == a.sensitivity for a in by_name.values())
    assert aggregates_of(small, "mean", {"column": "b"})["sum"].sensitivity == 100


def test_a_column_without_bounds_is_stored_but_never_summed(small: Built) -> None:
    u = small.layout.column("u")
    assert u.bounds is None
    assert u.bucket_edges == ()  # a personal dataset gets no data-derived edges either
    assert not any(key.endswith(":u") for key in small.layout.series)  # nothing of it is stored
    for name, params in [
        ("sum", {"column": "u"}),
        ("mean", {"column": "u"}),
        ("variance", {"column": "u"}),
        ("group_by", {"by": "g", "aggregate": "mean", "column": "u"}),
        ("covariance", {"columns": ["y", "u"]}),
        ("linear_regression", {"target": "u", "features": ["y"]}),
    ]:
        assert refusal(small, name, params) == ErrorCode.COLUMN_UNBOUNDED
    view = {c["name"]: c for c in public_view(small.layout)}
    assert view["u"]["operations"] == []
    assert view["u"]["bounds"] is None


def test_a_boolean_is_bounded_by_its_type(small: Built) -> None:
    rare = small.layout.column("rare")
    assert (rare.bounds, rare.bounds_source, rare.scale) == ((0, 1), "declared", 1)


# ---------------------------------------------------------------- cohorts


def test_a_rare_binary_feature_names_a_cohort_of_one_and_the_custodian_refuses_it(small: Built) -> None:
    """A regression of y on a 0/1 column that is 1 on one row: intercept + coefficient is that
    row's y. Its cohort counts the rows where the feature is non-zero: 1."""
    released, reference, aggregates = run(small, "linear_regression", {"target": "y", "features": ["rare"]})
    assert_close(released, reference)
    y = small.table.column("y").to_numpy()
    assert released["intercept"] + released["coefficients"]["rare"] == pytest.approx(y[RARE_ROW], abs=1e-3)
    by_name = {a.name: a for a in aggregates}
    assert by_name["count"].value == ROWS  # what the old check looked at: it passed
    feature = by_name["sum.0"]
    assert by_name[feature.cohort].value == 1
    assert by_name["prod.0.1"].cohort == feature.cohort  # rare * y: rows where both are non-zero
    exact = {a.name: a.value for a in aggregates}
    withheld = custody.withheld_for_cohort(aggregates, exact, 10)
    assert withheld is not None
    assert withheld.code == ErrorCode.COHORT_TOO_SMALL
    assert custody.withheld_for_cohort(aggregates, exact, 1) is None


def test_each_value_of_a_low_cardinality_column_is_a_cohort(small: Built) -> None:
    """A 0/1 column that is 0 on one row: the intercept is that row's y. Its non-zero rows are
    many, but its value 0 names a cohort of 1."""
    flag = small.layout.column("flag")
    assert flag.values == (0, 1)
    assert "nonzero:flag" not in small.layout.series  # its contributors are value:flag:1
    assert "values" not in repr(public_view(small.layout))
    released, reference, aggregates = run(small, "linear_regression", {"target": "y", "features": ["flag"]})
    assert_close(released, reference)
    by_name = {a.name: a for a in aggregates}
    counts = sorted(by_name[name].value for name in by_name["sum.0"].cohorts)
    assert counts == [1, ROWS - 1]
    assert by_name[by_name["sum.0"].cohort].value == ROWS - 1
    assert custody.withheld_for_cohort(aggregates, {a.name: a.value for a in aggregates}, 10) is not None


def test_a_sums_cohort_counts_the_rows_that_move_it(small: Built) -> None:
    raw = small.table.column("b").to_numpy(zero_copy_only=False)
    present = ~np.isnan(raw)
    by_name = aggregates_of(small, "mean", {"column": "b"})
    assert by_name["count"].value == present.sum()  # released: the mean's denominator
    contributors = by_name[by_name["sum"].cohort]
    assert contributors.value == (present & (np.clip(np.nan_to_num(raw), 0, 100) != 0)).sum()
    assert contributors.value < by_name["count"].value  # values clamped to 0 move nothing
    # Filtered: the filter is one more factor of the sum and of its cohorts alike.
    where = {"column": "g", "equals": "a"}
    filtered = aggregates_of(small, "sum", {"column": "b", "where": where})
    in_a = np.asarray(small.table.column("g").to_pylist()) == "a"
    expected = (in_a & present & (np.clip(np.nan_to_num(raw), 0, 100) != 0)).sum()
    assert filtered[filtered["sum"].cohort].value == expected


def test_cohort_counts_are_aggregates_in_the_list(small: Built) -> None:
    for name, params in [
        ("mean", {"column": "b"}),
        ("group_by", {"by": "g", "aggregate": "mean", "column": "b"}),
        ("covariance", {"columns": ["y", "flag"]}),
        ("histogram", {"column": "b"}),
    ]:
        aggregates = run(small, name, params)[2]
        names = {a.name for a in aggregates}
        for aggregate in aggregates:
            assert aggregate.cohort == aggregate.cohorts[0]
            assert set(aggregate.cohorts) <= names
            assert all(next(a for a in aggregates if a.name == c).sensitivity == 1 for c in aggregate.cohorts)


# ---------------------------------------------------------------- cells


def test_the_cells_of_a_bucketed_column_hold_every_row_once(small: Built) -> None:
    released, reference, aggregates = run(small, "histogram", {"column": "b"})
    assert_close(released, reference)
    cells = [bucket["bucket"] for bucket in released["buckets"]]
    assert cells == ["below", 0, 1, 2, "above", "null"]
    assert sum(bucket["count"] for bucket in released["buckets"]) == ROWS
    assert all(bucket["count"] > 0 for bucket in released["buckets"])
    assert all(a.cohort == a.name for a in aggregates)  # each cell its own cohort
    below, above, null = (released["buckets"][i] for i in (0, 4, 5))
    assert (below["from"], below["to"]) == (None, 20)
    assert (above["from"], above["to"]) == (80, None)
    assert (null["from"], null["to"]) == (None, None)


@pytest.mark.parametrize(
    "where",
    [
        {"column": "b", "bucket": "null"},
        {"column": "b", "bucket": "below"},
        {"column": "b", "bucket": "above"},
        {"column": "b", "bucket": 1},
        {"column": "b", "bucket_from": "below", "bucket_to": 0},
        {"column": "b", "bucket_from": 2, "bucket_to": "above"},
        {"column": "b", "bucket_from": "below", "bucket_to": "above"},
        {"column": "y", "bucket_from": "above", "bucket_to": "above"},
    ],
)
def test_a_filter_names_any_cell(small: Built, where: dict[str, Any]) -> None:
    for name, params in [("count", {"where": where}), ("mean", {"column": "flag", "where": where})]:
        released, reference, _ = run(small, name, params)
        assert_close(released, reference)
    again = get_operation("count").validate({"where": where}, small.layout)
    assert get_operation("count").validate(again, small.layout) == again


def test_the_cells_of_a_filter_add_up(small: Built) -> None:
    def count(where: dict[str, Any]) -> float:
        return float(run(small, "count", {"where": {"column": "b", **where}})[0]["count"])

    everything = count({"bucket_from": "below", "bucket_to": "above"}) + count({"bucket": "null"})
    assert everything == ROWS


@pytest.mark.parametrize(
    "where",
    [
        {"column": "y", "bucket": "null"},  # y has no nulls
        {"column": "b", "bucket_from": "above", "bucket_to": "below"},
        {"column": "b", "bucket_from": "null", "bucket_to": 1},
        {"column": "b", "bucket": "null", "bucket_from": 0, "bucket_to": 1},
        {"column": "b", "bucket": True},
        {"column": "b", "bucket": 3},
        {"column": "b"},
    ],
)
def test_a_filter_on_a_cell_the_column_lacks_is_refused(small: Built, where: dict[str, Any]) -> None:
    assert refusal(small, "count", {"where": where}) == ErrorCode.INVALID_PARAMETERS


# ---------------------------------------------------------------- non-personal datasets


def test_exact_bounds_and_quantile_edges_only_on_a_non_personal_dataset(exact: Built) -> None:
    z = exact.layout.column("z")
    raw = exact.table.column("z").to_numpy()
    assert z.bounds == (raw.min(), raw.max())
    assert (z.bounds_source, z.edges_source, z.rho) == ("exact", "exact", 0)
    assert exact.layout.non_personal
    assert exact.layout.rho_spent == 0
    released, reference, _ = run(exact, "mean", {"column": "z"})
    assert_close(released, reference)
    # The extremes are no one's to see: not in the view, not in a request's parameters.
    view = {c["name"]: c for c in public_view(exact.layout)}
    assert view["z"]["bounds"] is None
    assert get_operation("mean").validate({"column": "z"}, exact.layout)["bounds"] == {"z": None}


def test_exact_quantile_buckets_show_no_extremes(exact: Built) -> None:
    """Exact quantile edges begin and end at the column's extremes: consumers see open ends
    instead, in the store's view, in a filter and in a histogram. The provider's own edges are shown."""
    z = exact.layout.column("z")
    assert z.open_ends
    view = {c["name"]: c for c in public_view(exact.layout)}
    assert view["z"]["bucket_edges"] == [None, *z.bucket_edges[1:-1], None]
    assert view["age"]["bucket_edges"] == [0, 20, 40, 60, 80, 100]
    last = len(z.bucket_edges) - 2
    assert view["z"]["buckets"] == list(range(last + 1))  # no value lies below or above the extremes
    where = get_operation("count").validate(
        {"where": {"column": "z", "bucket_from": 0, "bucket_to": last}}, exact.layout
    )["where"]
    assert where["from"] is None
    assert where["to"] is None
    histogram = get_operation("histogram").validate({"column": "z"}, exact.layout)
    assert histogram["edges"] == view["z"]["bucket_edges"]
    shown = repr((view["z"], where, histogram))
    assert repr(z.bucket_edges[0]) not in shown
    assert repr(z.bucket_edges[-1]) not in shown
    released, reference, _ = run(exact, "histogram", {"column": "z"})
    assert_close(released, reference)
    assert sum(bucket["count"] for bucket in released["buckets"]) == 3_000


def test_an_estimate_spends_no_more_than_its_rho() -> None:
    counts = estimation.bin_counts(np.random.default_rng(3).normal(40, 10, 5_000))
    result = estimation.estimate(counts, rho=0.1, buckets=4, bounds=None)
    assert 0 < result.rho <= 0.1
    assert result.bounds[0] < result.bounds[1]
    assert all(result.bounds[0] < e < result.bounds[1] for e in result.inner_edges)
    assert set(result.bounds) | set(result.inner_edges) <= set(estimation.CANDIDATES)


# ---------------------------------------------------------------- layouts written before bounds


def as_version_1(layout: StoreLayout) -> dict[str, Any]:
    """The layout as written before bounds: no bounds, sources, zeros, values or cells."""
    data = json.loads(json.dumps(layout.to_json()))
    data["version"] = 1
    del data["non_personal"], data["rho_spent"]
    for column in data["columns"]:
        for key in ("bounds", "bounds_source", "edges_source", "zeros", "values", "rho", "legacy"):
            del column[key]
    data["series"] = {k: v for k, v in data["series"].items() if k.split(":")[0] in ("num", "present", "bucket", "cat")}
    return data


def test_a_layout_written_before_bounds_refuses_sums_on_a_personal_dataset(small_v2: Built) -> None:
    old = StoreLayout.from_json(as_version_1(small_v2.layout))
    assert all(plan.legacy and plan.bounds is None for plan in old.columns)
    with pytest.raises(OperationRejected) as caught:
        get_operation("mean").validate({"column": "y"}, old)
    assert caught.value.code == ErrorCode.COLUMN_UNBOUNDED
    # Its buckets still count (the cells it has: no below, above or null series).
    released, reference, _ = run(small_v2, "histogram", {"column": "b"}, layout=old)
    assert [bucket["bucket"] for bucket in released["buckets"]] == [0, 1, 2]
    assert_close(released, reference)


def test_a_layout_written_before_bounds_sums_on_a_non_personal_dataset(small_v2: Built) -> None:
    old = StoreLayout.from_json(as_version_1(small_v2.layout), non_personal=True)
    y = old.column("y")
    assert (y.bounds, y.bounds_source) == ((-8, 8), "exact")  # its data-derived scale
    released, reference, aggregates = run(small_v2, "mean", {"column": "y"}, layout=old)
    assert_close(released, reference)
    by_name = {a.name: a for a in aggregates}
    assert by_name["sum"].sensitivity == 8
    assert by_name["sum"].cohort == "count"  # no contributors series: its present rows


# ---------------------------------------------------------------- the custodian's shape check


def computed(built: Built, name: str, params: dict[str, Any]) -> tuple[dict[str, Any], EncryptedResult]:
    operation = get_operation(name)
    normalised = operation.validate(params, built.layout)
    with storage_at(built.storage):
        result = operation.compute(normalised, built.layout, built.public, lambda k: read_series(built.layout, k))
    return normalised, EncryptedResult.from_bytes(result.to_bytes())


def shape_refusal(built: Built, name: str, params: dict[str, Any], result: EncryptedResult) -> str:
    operation = get_operation(name)
    with pytest.raises(OperationRejected) as caught:
        operation.check_result(params, built.layout, result, built.secret)
    with pytest.raises(OperationRejected):
        operation.decrypt(params, built.layout, result, built.secret)
    return str(caught.value.code)


def test_the_custodian_accepts_the_result_it_expects(small_v2: Built) -> None:
    params, result = computed(small_v2, "variance", {"column": "b"})
    get_operation("variance").check_result(params, small_v2.layout, result, small_v2.secret)


def test_a_result_with_an_extra_part_is_refused_undecrypted(small_v2: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    params, result = computed(small_v2, "mean", {"column": "b"})
    secret = ts.ckks_vector(small_v2.secret["products"], [float(v) for v in range(4096)])  # e.g. one chunk of b
    extra = EncryptedResult(
        parts={**result.parts, "chunk": secret.serialize()}, folded={**result.folded, "chunk": False}
    )
    decrypted: list[int] = []
    original = ts.CKKSVector.decrypt

    def counting(self: ts.CKKSVector, *args: Any, **kwargs: Any) -> Any:
        decrypted.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ts.CKKSVector, "decrypt", counting)
    assert shape_refusal(small_v2, "mean", params, extra) == ErrorCode.RESULT_SHAPE_MISMATCH
    assert decrypted == []  # nothing was decrypted, the expected parts neither
    missing = EncryptedResult(
        parts={k: v for k, v in result.parts.items() if k != "sum"},
        folded={k: v for k, v in result.folded.items() if k != "sum"},
    )
    assert shape_refusal(small_v2, "mean", params, missing) == ErrorCode.RESULT_SHAPE_MISMATCH


def test_a_result_with_a_folded_part_swapped_is_refused(small_v2: Built) -> None:
    params, result = computed(small_v2, "variance", {"column": "b"})
    assert result.folded["sum"]
    assert not result.folded["sum_sq"]
    flags = EncryptedResult(parts=result.parts, folded={**result.folded, "sum": False, "sum_sq": True})
    assert shape_refusal(small_v2, "variance", params, flags) == ErrorCode.RESULT_SHAPE_MISMATCH
    swapped = EncryptedResult(
        parts={**result.parts, "sum": result.parts["sum_sq"], "sum_sq": result.parts["sum"]}, folded=result.folded
    )
    assert shape_refusal(small_v2, "variance", params, swapped) == ErrorCode.RESULT_SHAPE_MISMATCH


def test_a_result_with_a_wrong_slot_count_is_refused(small_v2: Built) -> None:
    params, result = computed(small_v2, "variance", {"column": "b"})
    unfolded = ts.ckks_vector(small_v2.secret["products"], [1.0] * 4096)  # a depth-0 vector left unfolded
    wide = EncryptedResult(parts={**result.parts, "sum": unfolded.serialize()}, folded=result.folded)
    assert shape_refusal(small_v2, "variance", params, wide) == ErrorCode.RESULT_SHAPE_MISMATCH
    one = ts.ckks_vector(small_v2.secret["products"], [1.0])
    narrow = EncryptedResult(parts={**result.parts, "sum_sq": (one * one).serialize()}, folded=result.folded)
    assert shape_refusal(small_v2, "variance", params, narrow) == ErrorCode.RESULT_SHAPE_MISMATCH


def test_a_result_of_another_level_or_depth_is_refused(small_v2: Built) -> None:
    params, result = computed(small_v2, "mean", {"column": "b"})
    sums = ts.ckks_vector(small_v2.secret["sums"], [1.0])
    other_level = EncryptedResult(parts={**result.parts, "sum": sums.serialize()}, folded=result.folded)
    assert shape_refusal(small_v2, "mean", params, other_level) == ErrorCode.RESULT_SHAPE_MISMATCH
    one = ts.ckks_vector(small_v2.secret["products"], [1.0])
    product = EncryptedResult(parts={**result.parts, "sum": (one * one).serialize()}, folded=result.folded)
    assert shape_refusal(small_v2, "mean", params, product) == ErrorCode.RESULT_SHAPE_MISMATCH
    garbage = EncryptedResult(parts={**result.parts, "sum": b"not a ciphertext"}, folded=result.folded)
    assert shape_refusal(small_v2, "mean", params, garbage) == ErrorCode.RESULT_SHAPE_MISMATCH


def test_layout_round_trips_with_bounds(small: Built) -> None:
    data = json.loads(json.dumps(small.layout.to_json()))
    assert StoreLayout.from_json(data) == small.layout
    assert StoreLayout.from_json(data, non_personal=True) == small.layout  # only version 1 reads the flag
