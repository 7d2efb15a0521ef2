"""The algebra every operation reduces to, the cohort of every number it releases, and the one
place that decides what a store can compute.

A *term* is the sum over all rows of a product of at most two *factors*, each factor being one
series or the sum of several indicator series (a filter). One factor is a depth-0 aggregate,
rotate-and-summed by the worker (``folded``: the value is in slot 0); two factors are a ct x ct
product, accumulated unrelinearised (size 3) by the worker and folded by the custodian after
decryption; three would need depth 2, which no parameter set has. A term with no factor at all is
the store's exact row count.

Sensitivity. Every term carries its sensitivity under adding or removing one row, from the
column's *bounds* (every stored value was clamped to them), never from the data: 1 for a count,
max(|lo|, |hi|) for a sum of x, max(lo^2, hi^2) for a sum of squares, max|x| * max|y| for a sum of
x*y; an indicator factor (a filter, a group) multiplies by 1. A scalar moves by the same amount
in L1 and in L2, so both norms are that one number.

Cohorts. ``with_cohorts`` gives every term the count terms that say how many rows stand behind it
(the custodian refuses a release when any is below k, on the noised counts):

- its *contributors*: the rows where every factor is non-zero. A count is its own. For a sum,
  each value factor x becomes the column's contributors indicator (``nonzero:x``: present and
  non-zero once clamped; the presence indicator, or nothing, where no clamped value is 0; the
  sum of the non-zero value indicators of a low-cardinality column) and every indicator factor
  stays. x*x needs x's indicator once (an indicator squared is itself), so a sum of squares has
  the depth-0 cohort of the sum; x*y has nonzero:x * nonzero:y, depth 1 like the product.
- for each low-cardinality column among its value factors, and each of that column's values v,
  the rows where the column is v, within the term's indicator factors: a 0/1 column that is 1 on
  one row (or 0 on one row) names a cohort of 1, whatever the other counts.

A filter is one more indicator factor, in the term and in all its cohorts alike: a cohort never
needs more depth, nor a higher level, than the term it counts for, so ``check_terms`` refuses a
term exactly when the term itself cannot be computed. A cohort equal to a count the operation
releases anyway (its ``count``) is that count, not a second term.

``check_terms`` refuses what no store can compute (depth 2) and what this one cannot (a product of
a column stored for sums only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dataspace.compute.he.layout import (
    NULL,
    ColumnKind,
    ColumnPlan,
    StoreLayout,
    category_key,
    cell_key,
    nonzero_key,
    numeric_key,
    presence_key,
    value_key,
)
from dataspace.compute.he.params import Level
from dataspace.compute.he.result import OperationRejected
from dataspace.errors import ErrorCode

MAX_DEPTH = 1


@dataclass(frozen=True)
class Factor:
    column: str
    keys: tuple[str, ...]  # summed: one series, or the indicator series of a filter
    scale: float = 1.0  # normalisation of the stored series; 1 for indicators
    bound: float = 1.0  # the most |value| one row contributes: max(|lo|, |hi|) of a value, 1 for an indicator
    is_value: bool = False  # the column's (clamped) values, not an indicator


@dataclass(frozen=True)
class Term:
    name: str
    factors: tuple[Factor, ...]  # () = the exact row count
    is_count: bool
    cohort: str = ""  # the count term of its contributors (set by ``with_cohorts``)
    cohorts: tuple[str, ...] = ()  # every count term that must reach k, ``cohort`` first

    @property
    def depth(self) -> int:
        return max(len(self.factors) - 1, 0)

    @property
    def scale(self) -> float:
        return math.prod(f.scale for f in self.factors)

    @property
    def sensitivity(self) -> float:
        """L1 (and L2) sensitivity under adding or removing one row, from the bounds."""
        return 1.0 if self.is_count else math.prod(f.bound for f in self.factors)


def value_factor(plan: ColumnPlan) -> Factor:
    """The column's clamped (normalised) values."""
    return Factor(plan.name, (numeric_key(plan.name),), plan.scale, plan.max_abs, is_value=True)


def presence_factors(plan: ColumnPlan) -> tuple[Factor, ...]:
    """The column's presence indicator where it has nulls; nothing where every row has a value."""
    if plan.kind == ColumnKind.NUMERIC and plan.has_nulls:
        return (Factor(plan.name, (presence_key(plan.name),)),)
    return ()


def contributor_factors(plan: ColumnPlan) -> tuple[Factor, ...]:
    """The rows whose value moves a sum of the column: present and non-zero once clamped."""
    if plan.legacy or not plan.zeros:
        return presence_factors(plan)
    nonzero = [i for i, v in enumerate(plan.values) if v != 0]
    if nonzero:
        return (Factor(plan.name, tuple(value_key(plan.name, i) for i in nonzero)),)
    return (Factor(plan.name, (nonzero_key(plan.name),)),)


def where_factors(params: dict[str, Any], layout: StoreLayout) -> tuple[Factor, ...]:
    """The validated ``where`` filter of ``params`` as a factor; nothing without a filter."""
    filter_ = params.get("where")
    if not filter_:
        return ()
    column = filter_["column"]
    if "equals" in filter_:
        return (Factor(column, (category_key(column, filter_["index"]),)),)
    if filter_.get("bucket") is not None:
        return (Factor(column, (cell_key(column, filter_["bucket"]),)),)
    ordered = [cell for cell in layout.column(column).cells if cell != NULL]
    first, last = ordered.index(filter_["bucket_from"]), ordered.index(filter_["bucket_to"])
    return (Factor(column, tuple(cell_key(column, cell) for cell in ordered[first : last + 1])),)


def count_term(name: str, factors: tuple[Factor, ...]) -> Term:
    """The number of rows where every factor is 1: its own cohort."""
    return Term(name=name, factors=factors, is_count=True)


def sum_term(name: str, factors: tuple[Factor, ...]) -> Term:
    """The sum over all rows of the product of ``factors`` (at least one a value)."""
    return Term(name=name, factors=factors, is_count=False)


def product_terms(plans: list[ColumnPlan], filter_: tuple[Factor, ...]) -> list[Term]:
    """The moments of several columns: the count, each column's sum (``sum.<a>``) and each sum of
    products (``prod.<a>.<b>``, a <= b), all over the filtered rows."""
    terms = [count_term("count", filter_)]
    for a, plan in enumerate(plans):
        terms.append(sum_term(f"sum.{a}", (value_factor(plan), *filter_)))
        for b in range(a, len(plans)):
            terms.append(sum_term(f"prod.{a}.{b}", (value_factor(plan), value_factor(plans[b]), *filter_)))
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


def _indicator_set(factors: tuple[Factor, ...]) -> frozenset[tuple[str, ...]]:
    """What a count of indicator factors counts: their product does not depend on order or repeats."""
    return frozenset(f.keys for f in factors)


def _cohort_factors(term: Term, layout: StoreLayout) -> list[tuple[Factor, ...]]:
    """The factors of every count the term needs as a cohort: its contributors, then each value
    of each low-cardinality column among its values."""
    indicators = tuple(f for f in term.factors if not f.is_value)
    columns = list(dict.fromkeys(f.column for f in term.factors if f.is_value))
    contributors = [*indicators]
    for column in columns:
        contributors.extend(contributor_factors(layout.column(column)))
    needed = [tuple(contributors)]
    for column in columns:
        plan = layout.column(column)
        needed.extend((*indicators, Factor(column, (value_key(column, i),))) for i in range(len(plan.values)))
    return needed


def with_cohorts(terms: list[Term], layout: StoreLayout) -> list[Term]:
    """``terms``, each naming its cohorts, followed by the count terms they need that ``terms``
    does not already hold (``<term>.cohort<j>``)."""
    counts: dict[frozenset[tuple[str, ...]], str] = {}
    for term in terms:
        if term.is_count:
            counts.setdefault(_indicator_set(term.factors), term.name)
    named: list[Term] = []
    extra: list[Term] = []
    for term in terms:
        if term.is_count:
            named.append(replace(term, cohort=term.name, cohorts=(term.name,)))
            continue
        names = []
        for j, factors in enumerate(_cohort_factors(term, layout)):
            unique = tuple({f.keys: f for f in factors}.values())
            key = _indicator_set(unique)
            if key not in counts:
                counts[key] = f"{term.name}.cohort{j}"
                extra.append(replace(count_term(counts[key], unique), cohort=counts[key], cohorts=(counts[key],)))
            names.append(counts[key])
        named.append(replace(term, cohort=names[0], cohorts=tuple(dict.fromkeys(names))))
    return named + extra


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
