"""Checking a request's parameters against a store, before any term is built.

A request names columns in *roles* (``column``, ``where``, ``by``, ``features``...). Each
operation declares its roles and what each requires of its column: a kind, bucket edges (numeric
columns in a filter or a histogram), no nulls, and the lowest level it may be stored at. The
checks here enforce kind, buckets and completeness, each refusal with its ``ErrorCode``; the level
is the terms' to enforce (``terms.check_terms``: whether a column enters a product can depend on
the other parameters, a filter above all), and what a role states of it is the least any request
needs, which is what the store's public view lists. A test holds the roles and ``validate``
together: the view lists a use exactly when ``validate`` accepts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataspace.compute.he.layout import ColumnKind, ColumnPlan, StoreLayout
from dataspace.compute.he.params import LEVELS, Level
from dataspace.compute.he.result import OperationRejected
from dataspace.errors import ErrorCode

NUMERIC = frozenset({ColumnKind.NUMERIC})
CATEGORICAL = frozenset({ColumnKind.CATEGORICAL})
ANY_KIND = NUMERIC | CATEGORICAL


WHERE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "optional filter: a category, or a range of buckets (inclusive) of a bucketed numeric column",
    "oneOf": [
        {"properties": {"column": {"type": "string"}, "equals": {"type": "string"}}, "required": ["column", "equals"]},
        {
            "properties": {
                "column": {"type": "string"},
                "bucket_from": {"type": "integer", "minimum": 0},
                "bucket_to": {"type": "integer", "minimum": 0},
            },
            "required": ["column", "bucket_from", "bucket_to"],
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


def validated_where(where: Any, layout: StoreLayout, role: Role) -> dict[str, Any] | None:
    """The filter normalised: ``{"column", "equals", "index"}`` for a category, ``{"column",
    "bucket_from", "bucket_to", "from", "to", "closed"}`` for a range of buckets; None for none."""
    if where is None:
        return None
    if not isinstance(where, dict) or "column" not in where:
        raise reject('where must be {"column", "equals"} or {"column", "bucket_from", "bucket_to"}')
    plan = role.column(layout, where["column"])
    if plan.kind == ColumnKind.CATEGORICAL:
        check_keys(where, {"column", "equals", "index"}, {"column", "equals"})
        category = where["equals"]
        if not isinstance(category, str) or category not in plan.categories:
            # The categories are not listed: the provider may not have made them public.
            raise reject(f"where.equals: {category!r} is not a category of {plan.name!r}")
        return {"column": plan.name, "equals": category, "index": plan.categories.index(category)}
    check_keys(
        where, {"column", "bucket_from", "bucket_to", "from", "to", "closed"}, {"column", "bucket_from", "bucket_to"}
    )
    first, last = where["bucket_from"], where["bucket_to"]
    count = len(plan.bucket_edges) - 1
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in (first, last)) or not 0 <= first <= last < count:
        raise reject(f"where: need integers 0 <= bucket_from <= bucket_to <= {count - 1} for {plan.name!r}")
    return {
        "column": plan.name,
        "bucket_from": first,
        "bucket_to": last,
        # Public edges (None: open), kept so the filter reads on its own and the reference needs no layout.
        "from": plan.public_edges()[first],
        "to": plan.public_edges()[last + 1],
        "closed": last == count - 1,
    }


def with_where(normalised: dict[str, Any], params: dict[str, Any], layout: StoreLayout, role: Role) -> dict[str, Any]:
    """``normalised`` with the request's validated filter, if it has one."""
    where = validated_where(params.get("where"), layout, role)
    if where:
        normalised["where"] = where
    return normalised
