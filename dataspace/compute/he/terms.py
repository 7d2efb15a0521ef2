"""The algebra every operation reduces to, and the one place that decides what a store can compute.

A *term* is the sum over all rows of a product of at most two *factors*, each factor being one
series or the sum of several indicator series (a filter). One factor is a depth-0 aggregate,
rotate-and-summed by the worker (``folded``: the value is in slot 0); two factors are a ct x ct
product, accumulated unrelinearised (size 3) by the worker and folded by the custodian after
decryption; three would need depth 2, which no parameter set has. A term with no factor at all is
the store's exact row count.

Every term names the count term of its cohort, and carries its L1 sensitivity under adding or
removing one row: 1 for a count, ``scale`` for a sum of x (|x| <= scale by construction) and
``scale_x * scale_y`` for a sum of products. ``check_terms`` refuses what no store can compute
(depth 2) and what this one cannot (a product of a column stored for sums only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataspace.compute.he.layout import (
    ColumnKind,
    ColumnPlan,
    StoreLayout,
    bucket_key,
    category_key,
    numeric_key,
    presence_key,
)
from dataspace.compute.he.params import Level
from dataspace.compute.he.result import OperationRejected
from dataspace.errors import ErrorCode

MAX_DEPTH = 1


@dataclass(frozen=True)
class Factor:
    column: str
    keys: tuple[str, ...]  # summed: one series, or the indicator series of a filter
    scale: float = 1.0  # 1 for indicators


@dataclass(frozen=True)
class Term:
    name: str
    factors: tuple[Factor, ...]  # () = the exact row count
    cohort: str
    is_count: bool

    @property
    def depth(self) -> int:
        return max(len(self.factors) - 1, 0)

    @property
    def scale(self) -> float:
        return math.prod(f.scale for f in self.factors)

    @property
    def sensitivity(self) -> float:
        return 1.0 if self.is_count else self.scale


def value_factor(plan: ColumnPlan) -> Factor:
    """The column's (normalised) values."""
    return Factor(plan.name, (numeric_key(plan.name),), plan.scale)


def presence_factors(plan: ColumnPlan) -> tuple[Factor, ...]:
    """The column's presence indicator where it has nulls; nothing where every row has a value."""
    if plan.kind == ColumnKind.NUMERIC and plan.has_nulls:
        return (Factor(plan.name, (presence_key(plan.name),)),)
    return ()


def where_factors(params: dict[str, Any]) -> tuple[Factor, ...]:
    """The validated ``where`` filter of ``params`` as a factor; nothing without a filter."""
    filter_ = params.get("where")
    if not filter_:
        return ()
    column = filter_["column"]
    if "equals" in filter_:
        return (Factor(column, (category_key(column, filter_["index"]),)),)
    keys = tuple(bucket_key(column, i) for i in range(filter_["bucket_from"], filter_["bucket_to"] + 1))
    return (Factor(column, keys),)


def count_term(name: str, factors: tuple[Factor, ...]) -> Term:
    """The number of rows where every factor is 1: its own cohort."""
    return Term(name=name, factors=factors, cohort=name, is_count=True)


def product_terms(plans: list[ColumnPlan], filter_: tuple[Factor, ...]) -> list[Term]:
    """The moments of several columns: the count, each column's sum (``sum.<a>``) and each sum of
    products (``prod.<a>.<b>``, a <= b), all over the filtered rows."""
    terms = [count_term("count", filter_)]
    for a, plan in enumerate(plans):
        terms.append(Term(f"sum.{a}", (value_factor(plan), *filter_), cohort="count", is_count=False))
        for b in range(a, len(plans)):
            terms.append(
                Term(
                    f"prod.{a}.{b}",
                    (value_factor(plan), value_factor(plans[b]), *filter_),
                    cohort="count",
                    is_count=False,
                )
            )
    return terms


def moments(count: int, aggregates: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """What ``product_terms`` of ``count`` columns decrypted to: (their sums, the symmetric matrix of
    their sums of products)."""
    sums = np.array([aggregates[f"sum.{a}"] for a in range(count)])
    products = np.empty((count, count))
    for a in range(count):
        for b in range(a, count):
            products[a, b] = products[b, a] = aggregates[f"prod.{a}.{b}"]
    return sums, products


def depth_of(terms: list[Term]) -> int:
    return max((term.depth for term in terms), default=0)


def check_terms(terms: list[Term], layout: StoreLayout) -> None:
    for term in terms:
        if term.depth > MAX_DEPTH:
            raise OperationRejected(
                f"{term.name!r} would multiply {len(term.factors)} encrypted series (depth {term.depth}); "
                "the stores support depth 1: drop the filter or a column",
                code=ErrorCode.DEPTH_EXCEEDED,
            )
    for term in terms:
        if term.depth == 1:
            for factor in term.factors:
                if layout.column(factor.column).level != Level.PRODUCTS:
                    raise OperationRejected(
                        f"column {factor.column!r} is stored for sums only and cannot enter a product",
                        code=ErrorCode.LEVEL_TOO_LOW,
                    )
