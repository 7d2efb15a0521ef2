"""Checking a request's parameters against a store, before any term is built.

A request names columns in *roles* (``column``, ``where``, ``by``, ``features``...). Each
operation declares its roles and what each requires of its column: a kind, bucket edges (numeric
columns in a filter or a histogram), bounds (a numeric column whose values are released: summed,
multiplied), no nulls, and the lowest level it may be stored at. The checks here enforce kind,
buckets, bounds and completeness, each refusal with its ``ErrorCode``; the level
is the terms' to enforce (``terms.check_terms``: whether a column enters a product can depend on
the other parameters, a filter above all), and what a role states of it is the least any request
needs, which is what the store's public view lists. A test holds the roles and ``validate``
together: the view lists a use exactly when ``validate`` accepts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataspace.compute.he.layout import ABOVE, BELOW, NULL, Cell, ColumnKind, ColumnPlan, StoreLayout
from dataspace.compute.he.params import LEVELS, Level
from dataspace.compute.he.result import OperationRejected
from dataspace.errors import ErrorCode

NUMERIC = frozenset({ColumnKind.NUMERIC})
CATEGORICAL = frozenset({ColumnKind.CATEGORICAL})
ANY_KIND = NUMERIC | CATEGORICAL


_CELL = {
    "oneOf": [
        {"type": "integer", "minimum": 0},
        {"enum": ["below", "above"]},
    ]
}
WHERE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "optional filter: a category; or cells of a bucketed numeric column: a range of them "
    '(inclusive, in the order "below", 0, 1, ..., "above": below the first edge, the buckets, above the '
    'last edge, which the last bucket includes), or one cell, "null" being the rows without a value',
    "oneOf": [
        {"properties": {"column": {"type": "string"}, "equals": {"type": "string"}}, "required": ["column", "equals"]},
        {
            "properties": {"column": {"type": "string"}, "bucket_from": _CELL, "bucket_to": _CELL},
            "required": ["column", "bucket_from", "bucket_to"],
        },
        {
            "properties": {
                "column": {"type": "string"},
                "bucket": {"oneOf": [{"type": "integer", "minimum": 0}, {"enum": ["below", "above", "null"]}]},
            },
            "required": ["column", "bucket"],
        },
    ],
}


def reject(message: str, code: ErrorCode = ErrorCode.INVALID_PARAMETERS) -> OperationRejected:
    return OperationRejected(message, code=code)


@dataclass(frozen=True)
class Role:
    """A part a column plays in an operation, named by the parameter that names the column."""

    name: str
    kinds: frozenset[ColumnKind]
    level: Level = Level.SUMS  # the lowest level at which some request with the column in this role runs
    buckets: bool = False  # a numeric column needs bucket edges
    bounded: bool = False  # a numeric column needs bounds: its values are released
    complete: bool = False  # the column may have no nulls

    @classmethod
    def where(cls, level: Level) -> Role:
        """The filter: a category, or a range of buckets of a numeric column."""
        return cls("where", ANY_KIND, level=level, buckets=True)

    @property
    def label(self) -> str:
        """How refusals name the parameter."""
        return "where.column" if self.name == "where" else self.name

    def admits(self, plan: ColumnPlan) -> bool:
        """Whether some request with ``plan`` in this role may run (given fitting other columns)."""
        return (
            plan.kind in self.kinds
            and not (self.buckets and plan.kind == ColumnKind.NUMERIC and not plan.bucket_edges)
            and not (self.bounded and plan.kind == ColumnKind.NUMERIC and plan.bounds is None)
            and not (self.complete and plan.has_nulls)
            and LEVELS[plan.level].depth >= LEVELS[self.level].depth
        )

    def column(self, layout: StoreLayout, name: Any) -> ColumnPlan:
        """The named column, if it exists and is of a kind (with buckets where needed) this role takes."""
        if not isinstance(name, str) or not name:
            raise reject(f"{self.label} must be a column name")
        try:
            plan = layout.column(name)
        except KeyError:
            known = ", ".join(plan.name for plan in layout.columns)
            raise reject(
                f"{self.label}: no encrypted column {name!r}; encrypted columns: {known}", ErrorCode.COLUMN_NOT_FOUND
            ) from None
        if plan.kind not in self.kinds:
            wanted = " or ".join(sorted(self.kinds))
            raise reject(
                f"{self.label}: column {plan.name!r} is {plan.kind}, a {wanted} column is needed", ErrorCode.COLUMN_KIND
            )
        if self.buckets and plan.kind == ColumnKind.NUMERIC and not plan.bucket_edges:
            raise reject(f"{self.label}: numeric column {plan.name!r} has no buckets", ErrorCode.COLUMN_KIND)
        if self.bounded and plan.kind == ColumnKind.NUMERIC and plan.bounds is None:
            raise reject(
                f"{self.label}: numeric column {plan.name!r} has no bounds, so no sensitivity: its provider "
                "declared none and none were estimated",
                ErrorCode.COLUMN_UNBOUNDED,
            )
        return plan

    def check_complete(self, plan: ColumnPlan) -> None:
        if self.complete and plan.has_nulls:
            raise reject(
                f"{self.label}: column {plan.name!r} has nulls; this operation needs complete columns",
                ErrorCode.INCOMPLETE_COLUMN,
            )


def check_keys(params: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
    """``params`` if it is an object with every required key and no other than the allowed."""
    if not isinstance(params, dict):
        raise reject("params must be an object")
    unknown = set(params) - allowed
    if unknown:
        raise reject(
            f"unknown parameters: {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(sorted(allowed))}"
        )
    missing = required - set(params)
    if missing:
        raise reject(f"missing parameters: {', '.join(sorted(missing))}")
    return params


def distinct_names(names: Any, *, least: int) -> bool:
    """Whether ``names`` is a list of at least ``least`` distinct entries."""
    return isinstance(names, list) and len(names) >= least and len(set(map(str, names))) == len(names)


def _cell(value: Any, plan: ColumnPlan, cells: list[Cell]) -> Cell:
    if isinstance(value, bool) or not isinstance(value, int | str) or value not in cells:
        names = ", ".join(map(str, cells))
        raise reject(f"where: {value!r} is not a cell of {plan.name!r}; its cells: {names}")
    return value


def _numeric_where(where: dict[str, Any], plan: ColumnPlan) -> dict[str, Any]:
    """A range of a bucketed column's cells, normalised with its public edges (None: open) so the
    filter reads on its own and the reference needs no layout; or its null cell."""
    check_keys(where, {"column", "bucket", "bucket_from", "bucket_to", "from", "to", "closed"}, {"column"})
    ordered = [cell for cell in plan.cells if cell != NULL]
    if "bucket" in where:
        if "bucket_from" in where or "bucket_to" in where:
            raise reject("where: name one bucket, or a range from bucket_from to bucket_to, not both")
        if where["bucket"] == NULL and NULL in plan.cells:
            return {"column": plan.name, "bucket": NULL}
        first = last = _cell(where["bucket"], plan, ordered)
    elif "bucket_from" in where and "bucket_to" in where:
        first, last = _cell(where["bucket_from"], plan, ordered), _cell(where["bucket_to"], plan, ordered)
        if ordered.index(first) > ordered.index(last):
            raise reject(f"where: bucket_from comes after bucket_to in {plan.name!r}")
    else:
        raise reject("where: name a bucket, or bucket_from and bucket_to")
    edges = plan.public_edges()
    last_bucket = len(edges) - 2
    return {
        "column": plan.name,
        "bucket_from": first,
        "bucket_to": last,
        # Public edges (None: open). Below the first edge starts nowhere, above the last ends
        # nowhere and starts just above it (the last bucket holds the edge itself).
        "from": None if first == BELOW else edges[-1] if first == ABOVE else edges[int(first)],
        "to": None if last == ABOVE else edges[0] if last == BELOW else edges[int(last) + 1],
        "closed": last == last_bucket,
    }


def validated_where(where: Any, layout: StoreLayout, role: Role) -> dict[str, Any] | None:
    """The filter normalised: ``{"column", "equals", "index"}`` for a category, ``{"column",
    "bucket_from", "bucket_to", "from", "to", "closed"}`` for a range of cells, ``{"column",
    "bucket": "null"}`` for the nulls; None for none."""
    if where is None:
        return None
    if not isinstance(where, dict) or "column" not in where:
        raise reject(
            'where must be {"column", "equals"}, {"column", "bucket_from", "bucket_to"} or {"column", "bucket"}'
        )
    plan = role.column(layout, where["column"])
    if plan.kind == ColumnKind.CATEGORICAL:
        check_keys(where, {"column", "equals", "index"}, {"column", "equals"})
        category = where["equals"]
        if not isinstance(category, str) or category not in plan.categories:
            # The categories are not listed: the provider may not have made them public.
            raise reject(f"where.equals: {category!r} is not a category of {plan.name!r}")
        return {"column": plan.name, "equals": category, "index": plan.categories.index(category)}
    return _numeric_where(where, plan)


def bounds_of(plans: list[ColumnPlan]) -> dict[str, list[float] | None]:
    """The bounds each column's values were clamped to, as a request's parameters carry them (the
    reference clamps with them); None where they are exact, which clamps nothing."""
    return {plan.name: plan.public_bounds() for plan in plans}


def with_where(normalised: dict[str, Any], params: dict[str, Any], layout: StoreLayout, role: Role) -> dict[str, Any]:
    """``normalised`` with the request's validated filter, if it has one."""
    where = validated_where(params.get("where"), layout, role)
    if where:
        normalised["where"] = where
    return normalised
