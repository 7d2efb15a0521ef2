"""The eight operations a consumer may run on an encrypted store, and ``REGISTRY``, one per
``OperationName``. Each states what it takes (parameters, and the roles its columns play:
``validation.Role``), reduces a validated request to the terms it releases (``_terms``: the same
for all then adds each number's cohorts, ``terms.with_cohorts``) and turns the terms' (possibly
noised) aggregates into the released JSON (``finish``), every number rounded to its ``precision``
significant digits. Evaluating, checking and decrypting terms is the same for all
(``evaluation``), and so is checking them against plaintext (``reference``: ``references``).

A request's normalised parameters carry what its answer depends on besides the data: the bounds
its columns' values were clamped to (``bounds``), the cells of a histogram, the edges of a filter.

The eight live in one module, past the usual size, on purpose: each is a short class, and the
point is to read them side by side.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import pyarrow as pa
import tenseal as ts

from dataspace.compute.he.evaluation import SeriesReader, decrypt, evaluate, load_result, require_public
from dataspace.compute.he.layout import ABOVE, BELOW, NULL, StoreLayout, category_key, cell_key
from dataspace.compute.he.params import Level
from dataspace.compute.he.plaintext import rounded
from dataspace.compute.he.references import REFERENCES
from dataspace.compute.he.result import Aggregate, EncryptedResult, OperationRejected
from dataspace.compute.he.terms import (
    Factor,
    Term,
    check_terms,
    count_term,
    depth_of,
    moments,
    presence_factors,
    product_terms,
    sum_term,
    value_factor,
    where_factors,
    with_cohorts,
)
from dataspace.compute.he.validation import (
    CATEGORICAL,
    NUMERIC,
    WHERE_SCHEMA,
    Role,
    bounds_of,
    check_keys,
    distinct_names,
    reject,
    with_where,
)
from dataspace.errors import ErrorCode
from dataspace.operation_names import OperationName

# The rest of the platform asks for an operation here, and finds its results' types here too.
__all__ = ["REGISTRY", "Aggregate", "EncryptedResult", "Operation", "OperationRejected", "get_operation"]

# The filter of an operation whose terms are products already: read and checked like any filter,
# then refused as depth 2. Not among the operation's roles, since no request with it runs.
_FILTER_OF_A_PRODUCT = Role.where(Level.PRODUCTS)


class Operation(ABC):
    name: OperationName
    depth: int  # the most a request may need (a filter adds one)
    description: str
    parameters: dict[str, Any]  # JSON schema, for the API's listing
    output: str
    precision = 6  # significant digits of every released number
    roles: tuple[Role, ...]  # every part a column can play in a request that runs

    # -- what each operation defines
    @abstractmethod
    def _normalise(self, params: Any, layout: StoreLayout) -> dict[str, Any]:
        """The request's parameters checked against the store and normalised; terms unchecked."""

    @abstractmethod
    def _terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        """The terms whose aggregates ``_finish`` reads."""

    @abstractmethod
    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]: ...

    # -- the same for all
    def terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        """The released terms, each naming its cohorts, then the cohorts' own count terms."""
        return with_cohorts(self._terms(params, layout), layout)

    def role(self, name: str) -> Role:
        return next(role for role in self.roles if role.name == name)

    def _filter_role(self) -> Role:
        return next((role for role in self.roles if role.name == "where"), _FILTER_OF_A_PRODUCT)

    def validate(self, params: Any, layout: StoreLayout) -> dict[str, Any]:
        """The parameters normalised (idempotent: validating them again returns them unchanged),
        or ``OperationRejected`` if this store cannot run the request."""
        normalised = self._normalise(params, layout)
        check_terms(self.terms(normalised, layout), layout)
        return normalised

    def required_depth(self, params: dict[str, Any], layout: StoreLayout) -> int:
        """The multiplicative depth of the request's terms, whether or not a store supports it."""
        return depth_of(self.terms(self._normalise(params, layout), layout))

    def compute(
        self, params: dict[str, Any], layout: StoreLayout, contexts: dict[str, ts.Context], read: SeriesReader
    ) -> EncryptedResult:
        """The HE worker's part: every term evaluated with public contexts only."""
        require_public(contexts)
        params = self.validate(params, layout)
        return evaluate(self.terms(params, layout), layout, contexts, read)

    def check_result(
        self, params: dict[str, Any], layout: StoreLayout, result: EncryptedResult, contexts: dict[str, ts.Context]
    ) -> None:
        """The custodian's check before decrypting: ``result`` holds exactly the parts this request
        implies, each of the expected level, folding and slot count (loaded, not decrypted);
        ``OperationRejected`` (``result_shape_mismatch``) otherwise."""
        params = self.validate(params, layout)
        load_result(self.terms(params, layout), layout, result, contexts)

    def decrypt(
        self, params: dict[str, Any], layout: StoreLayout, result: EncryptedResult, contexts: dict[str, ts.Context]
    ) -> list[Aggregate]:
        """Every term's aggregate (cohorts included), after the same check as ``check_result``."""
        params = self.validate(params, layout)
        return decrypt(self.terms(params, layout), layout, result, contexts)

    def finish(self, params: dict[str, Any], layout: StoreLayout, aggregates: dict[str, float]) -> dict[str, Any]:
        params = self.validate(params, layout)
        return dict(rounded(self._finish(params, aggregates), self.precision))

    def answer_from(self, valid_params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        """The answer from (noisy) aggregates before rounding, ``valid_params`` as ``validate``
        returned them: what error bounds are computed on, many times per release."""
        return self._finish(valid_params, aggregates)

    def reference(self, params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
        """The same JSON as ``finish`` computed on plaintext; ``params`` as ``validate`` returned them."""
        return dict(rounded(REFERENCES[self.name](params, table), self.precision))

    def _column_and_where(self, params: Any, layout: StoreLayout) -> dict[str, Any]:
        """Parameters ``column`` and an optional ``where``, normalised."""
        check_keys(params, {"column", "where", "bounds"}, {"column"})
        plan = self.role("column").column(layout, params["column"])
        normalised: dict[str, Any] = {"column": plan.name, "bounds": bounds_of([plan])}
        return with_where(normalised, params, layout, self._filter_role())


def _mean(total: float, count: float) -> float | None:
    return total / count if count > 0 else None


class Count(Operation):
    name = OperationName.COUNT
    depth = 0
    description = "Number of rows, optionally of those matching a filter."
    parameters = {"type": "object", "properties": {"where": WHERE_SCHEMA}}
    output = '{"count": number}'
    roles = (Role.where(Level.SUMS),)

    def _normalise(self, params: Any, layout: StoreLayout) -> dict[str, Any]:
        check_keys(params, {"where"}, set())
        return with_where({}, params, layout, self.role("where"))

    def _terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        return [count_term("count", where_factors(params, layout))]

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        return {"count": aggregates["count"]}


class Sum(Operation):
    name = OperationName.SUM
    depth = 1
    description = "Sum of a numeric column (nulls skipped), optionally over the rows matching a filter."
    parameters = {
        "type": "object",
        "properties": {"column": {"type": "string", "description": "numeric column"}, "where": WHERE_SCHEMA},
        "required": ["column"],
    }
    output = '{"sum": number}'
    roles = (Role("column", NUMERIC, bounded=True), Role.where(Level.PRODUCTS))

    def _normalise(self, params: Any, layout: StoreLayout) -> dict[str, Any]:
        return self._column_and_where(params, layout)

    def _terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        plan = layout.column(params["column"])
        where = where_factors(params, layout)
        return [
            sum_term("sum", (value_factor(plan), *where)),
            count_term("count", (*where, *presence_factors(plan))),
        ]

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        return {"sum": aggregates["sum"]}


class Mean(Sum):
    name = OperationName.MEAN
    description = "Mean of a numeric column over its non-null values, optionally of the rows matching a filter."
    output = '{"mean": number, "count": number}'

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        return {"mean": _mean(aggregates["sum"], aggregates["count"]), "count": aggregates["count"]}


class Variance(Operation):
    name = OperationName.VARIANCE
    depth = 1
    description = "Sample variance (n - 1 denominator), standard deviation and mean of a numeric column."
    parameters = {
        "type": "object",
        "properties": {"column": {"type": "string", "description": "numeric column stored for products"}},
        "required": ["column"],
    }
    output = '{"variance": number, "std": number, "mean": number, "count": number}'
    roles = (Role("column", NUMERIC, level=Level.PRODUCTS, bounded=True),)

    def _normalise(self, params: Any, layout: StoreLayout) -> dict[str, Any]:
        return self._column_and_where(params, layout)  # with a filter, x * x * filter: depth 2, refused

    def _terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        plan = layout.column(params["column"])
        where = where_factors(params, layout)
        return [
            sum_term("sum", (value_factor(plan), *where)),
            sum_term("sum_sq", (value_factor(plan), value_factor(plan), *where)),
            count_term("count", (*where, *presence_factors(plan))),
        ]

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        n, total, squares = aggregates["count"], aggregates["sum"], aggregates["sum_sq"]
        if n < 2:
            return {"variance": None, "std": None, "mean": _mean(total, n), "count": n}
        variance = max((squares - total * total / n) / (n - 1), 0.0)
        return {"variance": variance, "std": math.sqrt(variance), "mean": total / n, "count": n}


class GroupBy(Operation):
    name = OperationName.GROUP_BY
    depth = 1
    description = "Count, sum or mean of a numeric column per category of a categorical column."
    parameters = {
        "type": "object",
        "properties": {
            "by": {"type": "string", "description": "categorical column"},
            "aggregate": {"enum": ["count", "sum", "mean"]},
            "column": {"type": "string", "description": "numeric column (not for count)"},
            "where": WHERE_SCHEMA,
        },
        "required": ["by", "aggregate"],
    }
    output = '{"groups": {category: {"count"} | {"sum"} | {"mean", "count"}}}'
    roles = (
        Role("by", CATEGORICAL),
        Role("column", NUMERIC, level=Level.PRODUCTS, bounded=True),
        Role.where(Level.PRODUCTS),
    )

    def _normalise(self, params: Any, layout: StoreLayout) -> dict[str, Any]:
        check_keys(params, {"by", "aggregate", "column", "where", "categories", "bounds"}, {"by", "aggregate"})
        by = self.role("by").column(layout, params["by"])
        aggregate = params["aggregate"]
        if aggregate not in ("count", "sum", "mean"):
            raise reject("aggregate must be one of count, sum, mean")
        normalised: dict[str, Any] = {"by": by.name, "aggregate": aggregate, "categories": list(by.categories)}
        if aggregate == "count":
            if params.get("column") is not None:
                raise reject("column is not taken by a count")
        else:
            if params.get("column") is None:
                raise reject(f"column is required for {aggregate}")
            plan = self.role("column").column(layout, params["column"])
            normalised["column"], normalised["bounds"] = plan.name, bounds_of([plan])
        return with_where(normalised, params, layout, self.role("where"))

    def _terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        by = layout.column(params["by"])
        where = where_factors(params, layout)
        plan = layout.column(params["column"]) if "column" in params else None
        out = []
        for index in range(len(by.categories)):
            group = Factor(by.name, (category_key(by.name, index),))
            count = f"{index}.count"
            if plan is None:
                out.append(count_term(count, (group, *where)))
                continue
            out.append(sum_term(f"{index}.sum", (value_factor(plan), group, *where)))
            out.append(count_term(count, (group, *where, *presence_factors(plan))))
        return out

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        groups: dict[str, Any] = {}
        for index, category in enumerate(params["categories"]):
            count = aggregates[f"{index}.count"]
            if params["aggregate"] == "count":
                groups[category] = {"count": count}
            elif params["aggregate"] == "sum":
                groups[category] = {"sum": aggregates[f"{index}.sum"]}
            else:
                groups[category] = {"mean": _mean(aggregates[f"{index}.sum"], count), "count": count}
        return {"groups": groups}


class Histogram(Operation):
    name = OperationName.HISTOGRAM
    depth = 1
    description = (
        "Row counts per cell of a bucketed numeric column: below the first edge, each bucket, above the last "
        "(the last bucket includes its upper edge) and null, so every row is counted once; a null edge is an open end."
    )
    parameters = {
        "type": "object",
        "properties": {
            "column": {"type": "string", "description": "numeric column with buckets"},
            "where": WHERE_SCHEMA,
        },
        "required": ["column"],
    }
    output = (
        '{"buckets": [{"bucket": index | "below" | "above" | "null", "from": number | null, '
        '"to": number | null, "count": number}]}'
    )
    roles = (Role("column", NUMERIC, buckets=True), Role.where(Level.PRODUCTS))

    def _normalise(self, params: Any, layout: StoreLayout) -> dict[str, Any]:
        check_keys(params, {"column", "where", "edges", "cells"}, {"column"})
        plan = self.role("column").column(layout, params["column"])
        normalised: dict[str, Any] = {"column": plan.name, "edges": plan.public_edges(), "cells": plan.cells}
        return with_where(normalised, params, layout, self.role("where"))

    def _terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        name = params["column"]
        where = where_factors(params, layout)
        cells = params["cells"]
        return [count_term(f"{cell}.count", (Factor(name, (cell_key(name, cell),)), *where)) for cell in cells]

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        edges = params["edges"]
        spans = {BELOW: (None, edges[0]), ABOVE: (edges[-1], None), NULL: (None, None)}
        buckets = []
        for cell in params["cells"]:
            low, high = spans[cell] if isinstance(cell, str) else (edges[cell], edges[cell + 1])
            buckets.append({"bucket": cell, "from": low, "to": high, "count": aggregates[f"{cell}.count"]})
        return {"buckets": buckets}


class Covariance(Operation):
    name = OperationName.COVARIANCE
    depth = 1
    description = "Sample covariance matrix (n - 1 denominator) of two or more complete numeric columns."
    parameters = {
        "type": "object",
        "properties": {"columns": {"type": "array", "items": {"type": "string"}, "minItems": 2}},
        "required": ["columns"],
    }
    output = '{"columns": [name], "matrix": [[number]], "count": number}'
    roles = (Role("columns", NUMERIC, level=Level.PRODUCTS, bounded=True, complete=True),)

    def _normalise(self, params: Any, layout: StoreLayout) -> dict[str, Any]:
        check_keys(params, {"columns", "where", "bounds"}, {"columns"})
        if not distinct_names(params["columns"], least=2):
            raise reject("columns must list at least two distinct numeric columns")
        role = self.role("columns")
        plans = [role.column(layout, name) for name in params["columns"]]
        for plan in plans:
            role.check_complete(plan)
        normalised: dict[str, Any] = {"columns": [plan.name for plan in plans], "bounds": bounds_of(plans)}
        return with_where(normalised, params, layout, self._filter_role())

    def _terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        plans = [layout.column(name) for name in params["columns"]]
        return product_terms(plans, where_factors(params, layout))

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        n = aggregates["count"]
        sums, products = moments(len(params["columns"]), aggregates)
        matrix = (products - np.outer(sums, sums) / n) / (n - 1) if n >= 2 else None
        return {"columns": params["columns"], "matrix": None if matrix is None else matrix.tolist(), "count": n}


class LinearRegression(Operation):
    name = OperationName.LINEAR_REGRESSION
    depth = 1
    description = (
        "Ordinary least squares of a target on one or more features, with an intercept: XtX and Xty are "
        "computed encrypted and solved after decryption."
    )
    parameters = {
        "type": "object",
        "properties": {
            "target": {"type": "string", "description": "complete numeric column"},
            "features": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
        "required": ["target", "features"],
    }
    output = '{"intercept": number, "coefficients": {feature: number}, "count": number}'
    roles = (
        Role("target", NUMERIC, level=Level.PRODUCTS, bounded=True, complete=True),
        Role("features", NUMERIC, level=Level.PRODUCTS, bounded=True, complete=True),
    )

    def _normalise(self, params: Any, layout: StoreLayout) -> dict[str, Any]:
        check_keys(params, {"target", "features", "where", "bounds"}, {"target", "features"})
        features = params["features"]
        if not distinct_names(features, least=1):
            raise reject("features must list at least one distinct numeric column")
        target_role, features_role = self.role("target"), self.role("features")
        target = target_role.column(layout, params["target"])
        plans = [features_role.column(layout, name) for name in features]
        if target.name in features:
            raise reject("the target cannot also be a feature")
        target_role.check_complete(target)
        for plan in plans:
            features_role.check_complete(plan)
        normalised: dict[str, Any] = {
            "target": target.name,
            "features": [plan.name for plan in plans],
            "bounds": bounds_of([*plans, target]),
        }
        return with_where(normalised, params, layout, self._filter_role())

    def _terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        # The target is listed last: its products with the features are X'y, its square is unused
        # but cheap next to a second pass.
        names = [*params["features"], params["target"]]
        return product_terms([layout.column(name) for name in names], where_factors(params, layout))

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        k = len(params["features"])
        sums, products = moments(k + 1, aggregates)
        n = aggregates["count"]
        gram = np.empty((k + 1, k + 1))
        gram[0, 0], gram[0, 1:], gram[1:, 0], gram[1:, 1:] = n, sums[:k], sums[:k], products[:k, :k]
        moment = np.concatenate([[sums[k]], products[:k, k]])
        beta = np.linalg.lstsq(gram, moment, rcond=None)[0]
        return {
            "intercept": float(beta[0]),
            "coefficients": {name: float(b) for name, b in zip(params["features"], beta[1:], strict=True)},
            "count": n,
        }


REGISTRY: dict[OperationName, Operation] = {
    op.name: op for op in (Count(), Sum(), Mean(), Variance(), GroupBy(), Histogram(), Covariance(), LinearRegression())
}


def get_operation(name: str) -> Operation:
    try:
        return REGISTRY[OperationName(name)]
    except (ValueError, TypeError, KeyError):  # ISSUE-13: KeyError: "algorithm" is the TEE engine's
        raise OperationRejected(
            f"unknown operation {name!r}; known: {', '.join(sorted(REGISTRY))}", code=ErrorCode.UNKNOWN_OPERATION
        ) from None
