"""The store view lists a use of a column exactly when ``validate`` accepts a request with the
column in that role: the view asks the operations' roles, and the roles must tell the truth.
No encryption: a layout is written out by hand, one column for each combination that matters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dataspace.compute.he.layout import ColumnKind, ColumnPlan, StoreLayout
from dataspace.compute.he.operations import REGISTRY, OperationRejected, get_operation
from dataspace.compute.he.params import Level
from dataspace.compute.he.view import column_uses, public_view
from dataspace.errors import ErrorCode

EDGES = (0.0, 1.0, 2.0)
B = (0.0, 2.0)  # bounds
NUMERIC, CATEGORICAL = ColumnKind.NUMERIC, ColumnKind.CATEGORICAL
SUMS, PRODUCTS = Level.SUMS, Level.PRODUCTS
LAYOUT = StoreLayout(
    rows=1000,
    slots=4096,
    columns=(
        ColumnPlan("n_sums", NUMERIC, SUMS, bounds=B),
        ColumnPlan("n_sums_buckets", NUMERIC, SUMS, bucket_edges=EDGES, bounds=B),
        ColumnPlan("n_sums_nulls_buckets", NUMERIC, SUMS, has_nulls=True, bucket_edges=EDGES, bounds=B),
        ColumnPlan("n_products", NUMERIC, PRODUCTS, bounds=B),
        ColumnPlan("n_products_nulls", NUMERIC, PRODUCTS, has_nulls=True, bounds=B),
        ColumnPlan("n_products_nulls_buckets", NUMERIC, PRODUCTS, has_nulls=True, bucket_edges=EDGES, bounds=B),
        # Unbounded: counted by its buckets, its values never released.
        ColumnPlan("n_products_unbounded", NUMERIC, PRODUCTS),
        ColumnPlan("n_products_unbounded_buckets", NUMERIC, PRODUCTS, has_nulls=True, bucket_edges=EDGES),
        # The partners: what every role admits at its most (numeric), a categorical for products.
        ColumnPlan("partner", NUMERIC, PRODUCTS, bucket_edges=EDGES, bounds=B),
        ColumnPlan("partner_2", NUMERIC, PRODUCTS, bucket_edges=EDGES, bounds=B),
        ColumnPlan("c_sums", CATEGORICAL, SUMS, categories=("x", "y")),
        ColumnPlan("c_products", CATEGORICAL, PRODUCTS, categories=("x", "y")),
    ),
    series={},
)


def where(column: str) -> dict[str, Any]:
    if LAYOUT.column(column).kind == CATEGORICAL:
        return {"column": column, "equals": "x"}
    return {"column": column, "bucket_from": 0, "bucket_to": 0}


# For each role of each operation, a request with ``c`` in the role and every other column the
# most accommodating there is (``p`` numeric, ``c_products`` categorical): if the store refuses
# that one, it refuses every request with ``c`` in the role.
REQUESTS: dict[tuple[str, str], Callable[[str, str], dict[str, Any]]] = {
    ("count", "where"): lambda c, p: {"where": where(c)},
    ("sum", "column"): lambda c, p: {"column": c},
    ("sum", "where"): lambda c, p: {"column": p, "where": where(c)},
    ("mean", "column"): lambda c, p: {"column": c},
    ("mean", "where"): lambda c, p: {"column": p, "where": where(c)},
    ("variance", "column"): lambda c, p: {"column": c},
    ("group_by", "by"): lambda c, p: {"by": c, "aggregate": "count"},
    ("group_by", "column"): lambda c, p: {"by": "c_products", "aggregate": "sum", "column": c},
    ("group_by", "where"): lambda c, p: {"by": "c_products", "aggregate": "count", "where": where(c)},
    ("histogram", "column"): lambda c, p: {"column": c},
    ("histogram", "where"): lambda c, p: {"column": p, "where": where(c)},
    ("covariance", "columns"): lambda c, p: {"columns": [c, p]},
    ("linear_regression", "target"): lambda c, p: {"target": c, "features": [p]},
    ("linear_regression", "features"): lambda c, p: {"target": p, "features": [c]},
}


def accepts(operation: str, params: dict[str, Any]) -> bool:
    try:
        get_operation(operation).validate(params, LAYOUT)
    except OperationRejected:
        return False
    return True


def test_every_role_of_every_operation_has_a_request() -> None:
    assert set(REQUESTS) == {(op.name, role.name) for op in REGISTRY.values() for role in op.roles}


@pytest.mark.parametrize("plan", LAYOUT.columns, ids=[plan.name for plan in LAYOUT.columns])
def test_the_view_lists_a_use_exactly_when_validate_accepts_it(plan: ColumnPlan) -> None:
    listed = set(column_uses(plan))
    partner = "partner_2" if plan.name == "partner" else "partner"
    for (operation, role), request in REQUESTS.items():
        accepted = accepts(operation, request(plan.name, partner))
        assert accepted == (f"{operation}.{role}" in listed), f"{plan.name} as {operation}.{role}"


def test_every_use_is_open_to_some_column_and_closed_to_another() -> None:
    uses = [set(column_uses(plan)) for plan in LAYOUT.columns]
    everything = {f"{operation}.{role}" for operation, role in REQUESTS}
    assert set().union(*uses) == everything
    assert all(any(use not in column for column in uses) for use in everything)


def test_a_filter_on_a_product_is_read_but_never_offered() -> None:
    """Variance, covariance and regression take ``where`` only to refuse it: with a filter their
    products are depth 2."""
    offered = {use for plan in LAYOUT.columns for use in column_uses(plan)}
    assert not offered & {"variance.where", "covariance.where", "linear_regression.where"}
    request = {"column": "partner", "where": where("c_products")}
    assert get_operation("variance").required_depth(request, LAYOUT) == 2
    with pytest.raises(OperationRejected) as caught:
        get_operation("variance").validate(request, LAYOUT)
    assert caught.value.code == ErrorCode.DEPTH_EXCEEDED


def test_an_unbounded_column_is_counted_but_never_summed() -> None:
    view = {column["name"]: column for column in public_view(LAYOUT)}
    assert view["n_products_unbounded"]["operations"] == []
    assert view["n_products_unbounded_buckets"]["operations"] == [
        "count.where",
        "sum.where",
        "mean.where",
        "group_by.where",
        "histogram.column",
        "histogram.where",
    ]
    assert view["n_products_unbounded_buckets"]["bounds"] is None
    for operation, params in [
        ("sum", {"column": "n_products_unbounded"}),
        ("variance", {"column": "n_products_unbounded_buckets"}),
        ("linear_regression", {"target": "partner", "features": ["n_products_unbounded"]}),
    ]:
        with pytest.raises(OperationRejected) as caught:
            get_operation(operation).validate(params, LAYOUT)
        assert caught.value.code == ErrorCode.COLUMN_UNBOUNDED


def test_the_public_view_carries_the_uses() -> None:
    view = {column["name"]: column for column in public_view(LAYOUT)}
    assert view["n_sums"]["operations"] == ["sum.column", "mean.column"]
    assert view["c_sums"]["operations"] == ["count.where", "group_by.by"]
    assert view["n_sums"]["kind"] == "numeric"
    assert view["c_products"]["level"] == "products"
