"""Every operation's answer computed on the plaintext table with numpy, to check the engine against.

Independent of the term machinery on purpose: a reference reads the table directly, from the
parameters as ``validate`` returned them (the bounds each column is clamped to, the edges and cells
of a histogram or a filter), and shares with the engine only how a column's values are read and
clamped (``plaintext``). Unrounded; ``Operation.reference`` rounds it as ``finish`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from dataspace.compute.he.plaintext import category_labels, clamped, numeric_values
from dataspace.operation_names import OperationName

Reference = Callable[[dict[str, Any], pa.Table], dict[str, Any]]

# Bound on |he - reference| / max(1, |reference|) of every released number before noise. Measured
# on the test table (20k rows): CKKS error before rounding is at most 3e-8 relative (a sum at the
# "sums" level, scale 2^25); released numbers are rounded to 6 significant digits, so two
# roundings of nearly equal values differ by at most 1e-5 relative. 1e-4 covers both with margin
# and still catches any real fault (a wrong scale or a lost chunk is far above 1e-3).
CKKS_RELATIVE_TOLERANCE = 1e-4
# The same bound for a number computed over the packed tails of a small store (N = 4096, ``params``):
# each tail is rotated to slot 0 at scale 2^25, ~1.5e-4 of a normalised value per row, so a
# product's sum over n rows carries ~1.5e-4 * sqrt(n); measured at most 1.5e-3 relative (a
# covariance, which cancels, at 100 rows) on the test table from 1 to 1,024 rows. Numbers read
# from packed totals keep ``CKKS_RELATIVE_TOLERANCE``; counts are exact either way.
SMALL_RING_RELATIVE_TOLERANCE = 5e-3


def _raw(table: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    return numeric_values(table.column(column))


def _numbers(table: pa.Table, column: str, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(the column's values clamped to the request's bounds for it, validity)."""
    values, valid = _raw(table, column)
    bounds = params["bounds"][column]
    return clamped(values, valid, None if bounds is None else (bounds[0], bounds[1])), valid


def _in_range(values: np.ndarray, low: float | None, high: float | None, *, closed: bool) -> np.ndarray:
    """low <= v < high (v <= high when closed); None is an open end."""
    inside = np.ones(len(values), dtype=bool) if low is None else values >= low
    if high is not None:
        inside &= values <= high if closed else values < high
    return np.asarray(inside, dtype=bool)


def _mask(params: dict[str, Any], table: pa.Table) -> np.ndarray:
    """The rows the request's filter keeps."""
    where = params.get("where")
    if not where:
        return np.ones(table.num_rows, dtype=bool)
    if "equals" in where:
        return np.asarray(category_labels(table.column(where["column"])) == where["equals"], dtype=bool)
    values, valid = _raw(table, where["column"])
    if where.get("bucket") == "null":
        return np.asarray(~valid, dtype=bool)
    inside = _in_range(values, where["from"], where["to"], closed=where["closed"])
    if where["bucket_from"] == "above":  # above the last edge, which the last bucket holds
        inside &= values != where["from"]
    return np.asarray(valid & inside, dtype=bool)


def count(params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
    return {"count": int(_mask(params, table).sum())}


def sum_(params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
    values, valid = _numbers(table, params["column"], params)
    return {"sum": float(values[valid & _mask(params, table)].sum())}


def mean(params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
    values, valid = _numbers(table, params["column"], params)
    chosen = values[valid & _mask(params, table)]
    return {"mean": float(chosen.mean()) if len(chosen) else None, "count": len(chosen)}


def variance(params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
    values, valid = _numbers(table, params["column"], params)
    chosen = values[valid]
    result = float(np.var(chosen, ddof=1))
    return {"variance": result, "std": math.sqrt(result), "mean": float(chosen.mean()), "count": len(chosen)}


def group_by(params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
    labels = category_labels(table.column(params["by"]))
    mask = _mask(params, table)
    values, valid = (
        _numbers(table, params["column"], params)
        if "column" in params
        else (np.zeros(len(mask)), np.ones(len(mask), bool))
    )
    groups: dict[str, Any] = {}
    for category in params["categories"]:
        chosen = mask & (labels == category)
        present = chosen & valid
        if params["aggregate"] == "count":
            groups[category] = {"count": int(chosen.sum())}
        elif params["aggregate"] == "sum":
            groups[category] = {"sum": float(values[present].sum())}
        else:
            n = int(present.sum())
            groups[category] = {"mean": float(values[present].mean()) if n else None, "count": n}
    return {"groups": groups}


def histogram(params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
    values, valid = _raw(table, params["column"])
    mask = _mask(params, table)
    present = values[valid & mask]
    edges = params["edges"]
    last = len(edges) - 2
    buckets = []
    for cell in params["cells"]:
        if cell == "null":
            low, high, count = None, None, int((~valid & mask).sum())
        elif cell == "below":
            low, high = None, edges[0]
            count = int((present < edges[0]).sum())
        elif cell == "above":
            low, high = edges[-1], None
            count = int((present > edges[-1]).sum())
        else:
            low, high = edges[cell], edges[cell + 1]
            count = int(_in_range(present, low, high, closed=cell == last).sum())
        buckets.append({"bucket": cell, "from": low, "to": high, "count": count})
    return {"buckets": buckets}


def covariance(params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
    data = np.stack([_numbers(table, name, params)[0] for name in params["columns"]])
    return {"columns": params["columns"], "matrix": np.cov(data, ddof=1).tolist(), "count": data.shape[1]}


def linear_regression(params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
    features = (_numbers(table, name, params)[0] for name in params["features"])
    design = np.column_stack([np.ones(table.num_rows), *features])
    target = _numbers(table, params["target"], params)[0]
    beta = np.linalg.lstsq(design, target, rcond=None)[0]
    return {
        "intercept": float(beta[0]),
        "coefficients": {name: float(b) for name, b in zip(params["features"], beta[1:], strict=True)},
        "count": table.num_rows,
    }


REFERENCES: dict[OperationName, Reference] = {
    OperationName.COUNT: count,
    OperationName.SUM: sum_,
    OperationName.MEAN: mean,
    OperationName.VARIANCE: variance,
    OperationName.GROUP_BY: group_by,
    OperationName.HISTOGRAM: histogram,
    OperationName.COVARIANCE: covariance,
    OperationName.LINEAR_REGRESSION: linear_regression,
}
