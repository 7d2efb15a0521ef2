"""The operations a consumer may run on an encrypted store.

Every operation reduces to a few *terms*: a term is the sum over all rows of a product of at most
two *factors*, each factor being one series or the sum of several indicator series (a filter).
One factor is a depth-0 aggregate, rotate-and-summed by the worker (``folded``: the value is in
slot 0); two factors are a ct x ct product, accumulated unrelinearised (size 3) by the worker and
folded by the custodian after decryption; three would need depth 2, which no parameter set has.
A term with no factor at all is the store's exact row count.

Counts: an unfiltered count over a column without nulls is the layout's exact row count (the
store's row count is public in the catalogue already); every filtered, grouped or null-aware count
is computed homomorphically and rounded to its integer after decryption (CKKS error on a count is
< 0.05). Every released number names the count aggregate of its cohort, and carries its L1
sensitivity under adding or removing one row: 1 for a count, ``scale`` for a sum of x (|x| <=
scale by construction) and ``scale_x * scale_y`` for a sum of products.

``finish`` turns the (possibly noised) aggregates into the released JSON, every number rounded to
the operation's ``precision`` significant digits; ``reference`` computes the same JSON from a
plaintext table with numpy, independently of the term machinery, to check the engine against.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tenseal as ts

from dataspace.compute.he.layout import (
    ColumnPlan,
    StoreLayout,
    bucket_key,
    category_key,
    numeric_key,
    presence_key,
    total_key,
)

# Bound on |he - reference| / max(1, |reference|) of every released number before noise. Measured
# on the test table (20k rows): CKKS error before rounding is at most 3e-8 relative (a sum at the
# "sums" level, scale 2^25); released numbers are rounded to 6 significant digits, so two
# roundings of nearly equal values differ by at most 1e-5 relative. 1e-4 covers both with margin
# and still catches any real fault (a wrong scale or a lost chunk is far above 1e-3).
CKKS_RELATIVE_TOLERANCE = 1e-4

REJECTION_CODES = (
    "unknown_operation",
    "invalid_parameters",
    "column_not_found",
    "column_kind",
    "level_too_low",
    "depth_exceeded",
    "incomplete_column",
)


class OperationRejected(Exception):
    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        assert code in REJECTION_CODES, code
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Aggregate:
    name: str
    value: float
    sensitivity: float  # L1 sensitivity (real units) under adding/removing one row
    cohort: str  # name of the count Aggregate (in the same list) giving this number's cohort size


@dataclass(frozen=True)
class EncryptedResult:
    parts: dict[str, bytes]  # name -> serialized CKKSVector
    folded: dict[str, bool]  # True: value in slot 0 (rotate-summed); False: size-3 slot vector to fold

    _MAGIC = b"RLRS1\n"
    _LENGTH = struct.Struct(">Q")

    def digest(self) -> str:
        """sha256 over the sorted names, each with its flag and its bytes, length-prefixed so no
        two different results can share a digest."""
        hasher = hashlib.sha256()
        for name in sorted(self.parts):
            encoded = name.encode()
            hasher.update(self._LENGTH.pack(len(encoded)) + encoded)
            hasher.update(b"\x01" if self.folded[name] else b"\x00")
            hasher.update(self._LENGTH.pack(len(self.parts[name])) + self.parts[name])
        return hasher.hexdigest()

    def to_bytes(self) -> bytes:
        names = sorted(self.parts)
        header = json.dumps(
            {"parts": [[name, self.folded[name], len(self.parts[name])] for name in names]}, separators=(",", ":")
        ).encode()
        return b"".join([self._MAGIC, self._LENGTH.pack(len(header)), header, *(self.parts[n] for n in names)])

    @classmethod
    def from_bytes(cls, data: bytes) -> EncryptedResult:
        if not data.startswith(cls._MAGIC):
            raise ValueError("not an encrypted result")
        offset = len(cls._MAGIC)
        (header_length,) = cls._LENGTH.unpack_from(data, offset)
        offset += cls._LENGTH.size
        header = json.loads(data[offset : offset + header_length])
        offset += header_length
        parts: dict[str, bytes] = {}
        folded: dict[str, bool] = {}
        for name, flag, length in header["parts"]:
            parts[name] = data[offset : offset + length]
            if len(parts[name]) != length:
                raise ValueError(f"encrypted result truncated in part {name!r}")
            folded[name] = bool(flag)
            offset += length
        if offset != len(data):
            raise ValueError("bytes after the encrypted result's last part")
        return cls(parts=parts, folded=folded)


# --------------------------------------------------------------------------- terms


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


def _value(plan: ColumnPlan) -> Factor:
    return Factor(plan.name, (numeric_key(plan.name),), plan.scale)


def _presence(plan: ColumnPlan) -> tuple[Factor, ...]:
    return (Factor(plan.name, (presence_key(plan.name),)),) if plan.kind == "numeric" and plan.has_nulls else ()


def _where(params: dict[str, Any]) -> tuple[Factor, ...]:
    where = params.get("where")
    if not where:
        return ()
    column = where["column"]
    if "equals" in where:
        return (Factor(column, (category_key(column, where["index"]),)),)
    keys = tuple(bucket_key(column, i) for i in range(where["bucket_from"], where["bucket_to"] + 1))
    return (Factor(column, keys),)


def _count_term(name: str, factors: tuple[Factor, ...]) -> Term:
    return Term(name=name, factors=factors, cohort=name, is_count=True)


def _check_terms(terms: list[Term], layout: StoreLayout) -> None:
    for term in terms:
        if term.depth > 1:
            raise OperationRejected(
                f"{term.name!r} would multiply {len(term.factors)} encrypted series (depth {term.depth}); "
                "the stores support depth 1: drop the filter or a column",
                code="depth_exceeded",
            )
    for term in terms:
        if term.depth == 1:
            for factor in term.factors:
                if layout.column(factor.column).level != "products":
                    raise OperationRejected(
                        f"column {factor.column!r} is stored for sums only and cannot enter a product",
                        code="level_too_low",
                    )


# --------------------------------------------------------------------------- validation helpers


def _reject(message: str, code: str = "invalid_parameters") -> OperationRejected:
    return OperationRejected(message, code=code)


def _check_keys(params: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise _reject("params must be an object")
    unknown = set(params) - allowed
    if unknown:
        raise _reject(
            f"unknown parameters: {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(sorted(allowed))}"
        )
    missing = required - set(params)
    if missing:
        raise _reject(f"missing parameters: {', '.join(sorted(missing))}")
    return params


def _column(layout: StoreLayout, name: Any, role: str) -> ColumnPlan:
    if not isinstance(name, str) or not name:
        raise _reject(f"{role} must be a column name")
    try:
        return layout.column(name)
    except KeyError:
        known = ", ".join(plan.name for plan in layout.columns)
        raise _reject(f"{role}: no encrypted column {name!r}; encrypted columns: {known}", "column_not_found") from None


def _numeric(layout: StoreLayout, name: Any, role: str) -> ColumnPlan:
    plan = _column(layout, name, role)
    if plan.kind != "numeric":
        raise _reject(f"{role}: column {plan.name!r} is {plan.kind}, a numeric column is needed", "column_kind")
    return plan


def _complete(plan: ColumnPlan, role: str) -> None:
    if plan.has_nulls:
        raise _reject(
            f"{role}: column {plan.name!r} has nulls; this operation needs complete columns", "incomplete_column"
        )


def _validate_where(where: Any, layout: StoreLayout) -> dict[str, Any] | None:
    if where is None:
        return None
    if not isinstance(where, dict) or "column" not in where:
        raise _reject('where must be {"column", "equals"} or {"column", "bucket_from", "bucket_to"}')
    plan = _column(layout, where["column"], "where.column")
    if plan.kind == "categorical":
        _check_keys(where, {"column", "equals", "index"}, {"column", "equals"})
        category = where["equals"]
        if not isinstance(category, str) or category not in plan.categories:
            raise _reject(
                # The categories are not listed: the provider may not have made them public.
                f"where.equals: {category!r} is not a category of {plan.name!r}"
            )
        return {"column": plan.name, "equals": category, "index": plan.categories.index(category)}
    if not plan.bucket_edges:
        raise _reject(f"where.column: numeric column {plan.name!r} has no buckets to filter on", "column_kind")
    _check_keys(
        where, {"column", "bucket_from", "bucket_to", "from", "to", "closed"}, {"column", "bucket_from", "bucket_to"}
    )
    first, last = where["bucket_from"], where["bucket_to"]
    count = len(plan.bucket_edges) - 1
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in (first, last)) or not 0 <= first <= last < count:
        raise _reject(f"where: need integers 0 <= bucket_from <= bucket_to <= {count - 1} for {plan.name!r}")
    return {
        "column": plan.name,
        "bucket_from": first,
        "bucket_to": last,
        # Public edges (None: open), kept so the filter reads on its own and the reference needs no layout.
        "from": plan.public_edges()[first],
        "to": plan.public_edges()[last + 1],
        "closed": last == count - 1,
    }


def round_significant(value: float, digits: int) -> float:
    if value == 0 or not math.isfinite(value):
        return float(value)
    return float(f"{value:.{digits}g}")


def _rounded(data: Any, digits: int) -> Any:
    if isinstance(data, bool) or data is None or isinstance(data, str):
        return data
    if isinstance(data, int | float | np.floating | np.integer):
        return round_significant(float(data), digits)
    if isinstance(data, dict):
        return {k: _rounded(v, digits) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_rounded(v, digits) for v in data]
    raise TypeError(type(data))


# --------------------------------------------------------------------------- plaintext helpers (reference)


def _plain_numeric(table: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    floats = pc.cast(table.column(column), pa.float64())
    valid = np.asarray(floats.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    values = np.asarray(floats.fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
    valid &= ~np.isnan(values)
    return np.where(valid, values, 0.0), valid


def _plain_strings(table: pa.Table, column: str) -> np.ndarray:
    array = table.column(column)
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    return np.asarray(pc.cast(array, pa.string()).to_pylist(), dtype=object)


def _plain_mask(params: dict[str, Any], table: pa.Table) -> np.ndarray:
    where = params.get("where")
    if not where:
        return np.ones(table.num_rows, dtype=bool)
    if "equals" in where:
        return np.asarray(_plain_strings(table, where["column"]) == where["equals"], dtype=bool)
    values, valid = _plain_numeric(table, where["column"])
    return np.asarray(valid & _in_range(values, where["from"], where["to"], closed=where["closed"]), dtype=bool)


def _in_range(values: np.ndarray, low: float | None, high: float | None, *, closed: bool) -> np.ndarray:
    """low <= v < high (v <= high when closed); None is an open end."""
    inside = np.ones(len(values), dtype=bool) if low is None else values >= low
    if high is not None:
        inside &= values <= high if closed else values < high
    return np.asarray(inside, dtype=bool)


# --------------------------------------------------------------------------- operations


class Operation(ABC):
    name: str
    depth: int
    description: str
    parameters: dict[str, Any]
    output: str
    precision: int

    # -- what subclasses define
    @abstractmethod
    def validate(self, params: dict[str, Any], layout: StoreLayout) -> dict[str, Any]: ...

    @abstractmethod
    def terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]: ...

    @abstractmethod
    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]: ...

    @abstractmethod
    def _reference(self, params: dict[str, Any], table: pa.Table) -> dict[str, Any]: ...

    # -- shared machinery
    def _checked_terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        terms = self.terms(params, layout)
        _check_terms(terms, layout)
        return terms

    def compute(
        self,
        params: dict[str, Any],
        layout: StoreLayout,
        contexts: dict[str, ts.Context],
        read: Callable[[str], Iterator[bytes]],
    ) -> EncryptedResult:
        """Evaluates every term with public contexts only. A depth-0 term whose series all have
        materialised totals is the sum of those totals (one ciphertext per series, already
        folded); every other term streams all chunks, holding one chunk of each needed series
        (plus one accumulator per term) at a time. ``read(key)`` yields a series' chunks, and
        ``read(total_key(key))`` its total (``store.read_series`` does both)."""
        if any(context.is_private() for context in contexts.values()):
            raise ValueError("compute takes public contexts only")
        params = self.validate(params, layout)
        terms = [t for t in self._checked_terms(params, layout) if t.factors]
        from_totals = [t for t in terms if t.depth == 0 and all(layout.series[k].total_blob for k in t.factors[0].keys)]
        totals: dict[str, Any] = {}
        for key in sorted({key for term in from_totals for key in term.factors[0].keys}):
            stream = read(total_key(key))
            totals[key] = ts.ckks_vector_from(contexts[layout.series[key].level], next(stream))
            if next(stream, None) is not None:
                raise ValueError(f"the total of series {key!r} has more than one ciphertext")
        accumulators: dict[str, Any] = {}
        for term in from_totals:
            factor_keys = term.factors[0].keys
            accumulator = totals[factor_keys[0]]
            for key in factor_keys[1:]:
                accumulator = accumulator + totals[key]  # not in place: totals are shared by terms
            accumulators[term.name] = accumulator
        streamed = [t for t in terms if t.name not in accumulators]
        streamed_names = {t.name for t in streamed}
        keys = sorted({key for term in streamed for factor in term.factors for key in factor.keys})
        distinct_factors = sorted({factor.keys for term in streamed for factor in term.factors})
        streams = {key: read(key) for key in keys}
        for _ in range(layout.chunks if streamed else 0):
            chunk = {
                key: ts.ckks_vector_from(contexts[layout.series[key].level], next(stream))
                for key, stream in streams.items()
            }
            sums: dict[tuple[str, ...], Any] = {}
            for factor_keys in distinct_factors:
                total = chunk[factor_keys[0]]
                for key in factor_keys[1:]:
                    total = total + chunk[key]
                sums[factor_keys] = total
            for term in streamed:
                values = [sums[f.keys] for f in term.factors]
                # Products stay size 3: relinearising costs ~7x the multiplication and the
                # custodian decrypts size-3 ciphertexts as they are.
                contribution = values[0] * values[1] if len(values) == 2 else values[0]
                # Not in place: a one-factor contribution is the chunk's own vector, shared with
                # other terms (and TenSEAL's copy() refuses public contexts).
                previous = accumulators.get(term.name)
                accumulators[term.name] = contribution if previous is None else previous + contribution
        for stream in streams.values():
            if next(stream, None) is not None:
                raise ValueError("a series has more chunks than the layout's rows")
        parts: dict[str, bytes] = {}
        folded: dict[str, bool] = {}
        for term in terms:
            accumulator = accumulators[term.name]
            if term.depth == 0:
                # A sum of totals is folded already; a sum of chunks is rotate-and-summed here.
                folded_sum = accumulator if term.name not in streamed_names else accumulator.sum()
                parts[term.name], folded[term.name] = folded_sum.serialize(), True
            else:
                parts[term.name], folded[term.name] = accumulator.serialize(), False
        return EncryptedResult(parts=parts, folded=folded)

    def decrypt(
        self, params: dict[str, Any], layout: StoreLayout, result: EncryptedResult, contexts: dict[str, ts.Context]
    ) -> list[Aggregate]:
        params = self.validate(params, layout)
        terms = self._checked_terms(params, layout)
        expected = {t.name: t.depth == 0 for t in terms if t.factors}
        if expected != result.folded or set(result.parts) != set(expected):
            raise ValueError("the encrypted result does not match the operation's terms")
        aggregates = []
        for term in terms:
            if not term.factors:
                value = float(layout.rows)
            else:
                level = layout.column(term.factors[0].column).level
                vector = ts.ckks_vector_from(contexts[level], result.parts[term.name]).decrypt()
                raw = vector[0] if result.folded[term.name] else math.fsum(vector)
                value = raw * term.scale
            if term.is_count:
                value = float(round(value))
            aggregates.append(Aggregate(term.name, value, term.sensitivity, term.cohort))
        return aggregates

    def finish(self, params: dict[str, Any], layout: StoreLayout, aggregates: dict[str, float]) -> dict[str, Any]:
        params = self.validate(params, layout)
        return dict(_rounded(self._finish(params, aggregates), self.precision))

    def reference(self, params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
        """The same JSON as ``finish`` computed on plaintext; ``params`` as ``validate`` returned them."""
        return dict(_rounded(self._reference(params, table), self.precision))

    def required_depth(self, params: dict[str, Any], layout: StoreLayout) -> int:
        return max((t.depth for t in self.terms(self.validate(params, layout), layout)), default=0)


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


def _mean(total: float, count: float) -> float | None:
    return total / count if count > 0 else None


def _with_where(
    operation: Operation, normalised: dict[str, Any], params: dict[str, Any], layout: StoreLayout
) -> dict[str, Any]:
    """``normalised`` with the request's validated ``where`` filter, if any, after checking the
    operation's terms: a filter that would exceed the store's depth is refused here."""
    where = _validate_where(params.get("where"), layout)
    if where:
        normalised["where"] = where
    operation._checked_terms(normalised, layout)
    return normalised


def _column_and_where(operation: Operation, params: dict[str, Any], layout: StoreLayout) -> dict[str, Any]:
    """Parameters ``column`` (numeric) and an optional ``where``, normalised and checked."""
    _check_keys(params, {"column", "where"}, {"column"})
    normalised: dict[str, Any] = {"column": _numeric(layout, params["column"], "column").name}
    return _with_where(operation, normalised, params, layout)


class Count(Operation):
    name = "count"
    depth = 0
    description = "Number of rows, optionally of those matching a filter."
    parameters = {"type": "object", "properties": {"where": WHERE_SCHEMA}}
    output = '{"count": number}'
    precision = 6

    def validate(self, params: dict[str, Any], layout: StoreLayout) -> dict[str, Any]:
        _check_keys(params, {"where"}, set())
        where = _validate_where(params.get("where"), layout)
        return {"where": where} if where else {}

    def terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        return [_count_term("count", _where(params))]

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        return {"count": aggregates["count"]}

    def _reference(self, params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
        return {"count": int(_plain_mask(params, table).sum())}


class Sum(Operation):
    name = "sum"
    depth = 1
    description = "Sum of a numeric column (nulls skipped), optionally over the rows matching a filter."
    parameters = {
        "type": "object",
        "properties": {"column": {"type": "string", "description": "numeric column"}, "where": WHERE_SCHEMA},
        "required": ["column"],
    }
    output = '{"sum": number}'
    precision = 6

    def validate(self, params: dict[str, Any], layout: StoreLayout) -> dict[str, Any]:
        return _column_and_where(self, params, layout)

    def terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        plan = layout.column(params["column"])
        where = _where(params)
        return [
            Term("sum", (_value(plan), *where), cohort="count", is_count=False),
            _count_term("count", (*where, *_presence(plan))),
        ]

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        return {"sum": aggregates["sum"]}

    def _reference(self, params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
        values, valid = _plain_numeric(table, params["column"])
        return {"sum": float(values[valid & _plain_mask(params, table)].sum())}


class Mean(Sum):
    name = "mean"
    description = "Mean of a numeric column over its non-null values, optionally of the rows matching a filter."
    output = '{"mean": number, "count": number}'

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        return {"mean": _mean(aggregates["sum"], aggregates["count"]), "count": aggregates["count"]}

    def _reference(self, params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
        values, valid = _plain_numeric(table, params["column"])
        chosen = values[valid & _plain_mask(params, table)]
        return {"mean": float(chosen.mean()) if len(chosen) else None, "count": len(chosen)}


class Variance(Operation):
    name = "variance"
    depth = 1
    description = "Sample variance (n - 1 denominator), standard deviation and mean of a numeric column."
    parameters = {
        "type": "object",
        "properties": {"column": {"type": "string", "description": "numeric column stored for products"}},
        "required": ["column"],
    }
    output = '{"variance": number, "std": number, "mean": number, "count": number}'
    precision = 6

    def validate(self, params: dict[str, Any], layout: StoreLayout) -> dict[str, Any]:
        return _column_and_where(self, params, layout)  # with a filter, x * x * filter: depth 2, refused

    def terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        plan = layout.column(params["column"])
        where = _where(params)
        return [
            Term("sum", (_value(plan), *where), cohort="count", is_count=False),
            Term("sum_sq", (_value(plan), _value(plan), *where), cohort="count", is_count=False),
            _count_term("count", (*where, *_presence(plan))),
        ]

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        n, total, squares = aggregates["count"], aggregates["sum"], aggregates["sum_sq"]
        if n < 2:
            return {"variance": None, "std": None, "mean": _mean(total, n), "count": n}
        variance = max((squares - total * total / n) / (n - 1), 0.0)
        return {"variance": variance, "std": math.sqrt(variance), "mean": total / n, "count": n}

    def _reference(self, params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
        values, valid = _plain_numeric(table, params["column"])
        chosen = values[valid]
        variance = float(np.var(chosen, ddof=1))
        return {"variance": variance, "std": math.sqrt(variance), "mean": float(chosen.mean()), "count": len(chosen)}


class GroupBy(Operation):
    name = "group_by"
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
    precision = 6

    def validate(self, params: dict[str, Any], layout: StoreLayout) -> dict[str, Any]:
        _check_keys(params, {"by", "aggregate", "column", "where", "categories"}, {"by", "aggregate"})
        by = _column(layout, params["by"], "by")
        if by.kind != "categorical":
            raise _reject(f"by: column {by.name!r} is numeric, a categorical column is needed", "column_kind")
        aggregate = params["aggregate"]
        if aggregate not in ("count", "sum", "mean"):
            raise _reject("aggregate must be one of count, sum, mean")
        normalised: dict[str, Any] = {"by": by.name, "aggregate": aggregate, "categories": list(by.categories)}
        if aggregate == "count":
            if params.get("column") is not None:
                raise _reject("column is not taken by a count")
        else:
            if params.get("column") is None:
                raise _reject(f"column is required for {aggregate}")
            normalised["column"] = _numeric(layout, params["column"], "column").name
        return _with_where(self, normalised, params, layout)

    def terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        by = layout.column(params["by"])
        where = _where(params)
        plan = layout.column(params["column"]) if "column" in params else None
        out = []
        for index in range(len(by.categories)):
            group = Factor(by.name, (category_key(by.name, index),))
            count = f"{index}.count"
            if plan is None:
                out.append(_count_term(count, (group, *where)))
                continue
            out.append(Term(f"{index}.sum", (_value(plan), group, *where), cohort=count, is_count=False))
            out.append(_count_term(count, (group, *where, *_presence(plan))))
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

    def _reference(self, params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
        labels = _plain_strings(table, params["by"])
        mask = _plain_mask(params, table)
        values, valid = (
            _plain_numeric(table, params["column"])
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


class Histogram(Operation):
    name = "histogram"
    depth = 1
    description = "Row counts per bucket of a bucketed numeric column (nulls in no bucket); a null edge is an open end."
    parameters = {
        "type": "object",
        "properties": {
            "column": {"type": "string", "description": "numeric column with buckets"},
            "where": WHERE_SCHEMA,
        },
        "required": ["column"],
    }
    output = '{"buckets": [{"from": number | null, "to": number | null, "count": number}]}'
    precision = 6

    def validate(self, params: dict[str, Any], layout: StoreLayout) -> dict[str, Any]:
        _check_keys(params, {"column", "where", "edges"}, {"column"})
        plan = _numeric(layout, params["column"], "column")
        if not plan.bucket_edges:
            raise _reject(f"column: numeric column {plan.name!r} has no buckets", "column_kind")
        normalised: dict[str, Any] = {"column": plan.name, "edges": plan.public_edges()}
        return _with_where(self, normalised, params, layout)

    def terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        name = params["column"]
        where = _where(params)
        return [
            _count_term(f"{i}.count", (Factor(name, (bucket_key(name, i),)), *where))
            for i in range(len(params["edges"]) - 1)
        ]

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        edges = params["edges"]
        return {
            "buckets": [
                {"from": edges[i], "to": edges[i + 1], "count": aggregates[f"{i}.count"]} for i in range(len(edges) - 1)
            ]
        }

    def _reference(self, params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
        values, valid = _plain_numeric(table, params["column"])
        chosen = values[valid & _plain_mask(params, table)]
        edges = params["edges"]
        buckets = []
        for i in range(len(edges) - 1):
            inside = _in_range(chosen, edges[i], edges[i + 1], closed=i == len(edges) - 2)
            buckets.append({"from": edges[i], "to": edges[i + 1], "count": int(inside.sum())})
        return {"buckets": buckets}


def _product_terms(plans: list[ColumnPlan], where: tuple[Factor, ...]) -> list[Term]:
    terms = [_count_term("count", where)]
    for a, plan in enumerate(plans):
        terms.append(Term(f"sum.{a}", (_value(plan), *where), cohort="count", is_count=False))
        for b in range(a, len(plans)):
            terms.append(
                Term(f"prod.{a}.{b}", (_value(plan), _value(plans[b]), *where), cohort="count", is_count=False)
            )
    return terms


def _moments(count: int, aggregates: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(sums, symmetric matrix of sums of products) of the listed columns."""
    sums = np.array([aggregates[f"sum.{a}"] for a in range(count)])
    products = np.empty((count, count))
    for a in range(count):
        for b in range(a, count):
            products[a, b] = products[b, a] = aggregates[f"prod.{a}.{b}"]
    return sums, products


class Covariance(Operation):
    name = "covariance"
    depth = 1
    description = "Sample covariance matrix (n - 1 denominator) of two or more complete numeric columns."
    parameters = {
        "type": "object",
        "properties": {"columns": {"type": "array", "items": {"type": "string"}, "minItems": 2}},
        "required": ["columns"],
    }
    output = '{"columns": [name], "matrix": [[number]], "count": number}'
    precision = 6

    def validate(self, params: dict[str, Any], layout: StoreLayout) -> dict[str, Any]:
        _check_keys(params, {"columns", "where"}, {"columns"})
        columns = params["columns"]
        if not isinstance(columns, list) or len(columns) < 2 or len(set(map(str, columns))) != len(columns):
            raise _reject("columns must list at least two distinct numeric columns")
        plans = [_numeric(layout, name, "columns") for name in columns]
        for plan in plans:
            _complete(plan, "columns")
        normalised: dict[str, Any] = {"columns": [plan.name for plan in plans]}
        return _with_where(self, normalised, params, layout)

    def terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        return _product_terms([layout.column(name) for name in params["columns"]], _where(params))

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        n = aggregates["count"]
        sums, products = _moments(len(params["columns"]), aggregates)
        matrix = (products - np.outer(sums, sums) / n) / (n - 1) if n >= 2 else None
        return {"columns": params["columns"], "matrix": None if matrix is None else matrix.tolist(), "count": n}

    def _reference(self, params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
        data = np.stack([_plain_numeric(table, name)[0] for name in params["columns"]])
        return {"columns": params["columns"], "matrix": np.cov(data, ddof=1).tolist(), "count": data.shape[1]}


class LinearRegression(Operation):
    name = "linear_regression"
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
    precision = 6

    def validate(self, params: dict[str, Any], layout: StoreLayout) -> dict[str, Any]:
        _check_keys(params, {"target", "features", "where"}, {"target", "features"})
        features = params["features"]
        if not isinstance(features, list) or not features or len(set(map(str, features))) != len(features):
            raise _reject("features must list at least one distinct numeric column")
        target = _numeric(layout, params["target"], "target")
        plans = [_numeric(layout, name, "features") for name in features]
        if target.name in features:
            raise _reject("the target cannot also be a feature")
        for plan, role in [(target, "target"), *((p, "features") for p in plans)]:
            _complete(plan, role)
        normalised: dict[str, Any] = {"target": target.name, "features": [plan.name for plan in plans]}
        return _with_where(self, normalised, params, layout)

    def terms(self, params: dict[str, Any], layout: StoreLayout) -> list[Term]:
        # The target is listed last: its products with the features are X'y, its square is unused
        # but cheap next to a second pass.
        names = [*params["features"], params["target"]]
        return _product_terms([layout.column(name) for name in names], _where(params))

    def _finish(self, params: dict[str, Any], aggregates: dict[str, float]) -> dict[str, Any]:
        k = len(params["features"])
        sums, products = _moments(k + 1, aggregates)
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

    def _reference(self, params: dict[str, Any], table: pa.Table) -> dict[str, Any]:
        design = np.column_stack(
            [np.ones(table.num_rows), *(_plain_numeric(table, name)[0] for name in params["features"])]
        )
        target = _plain_numeric(table, params["target"])[0]
        beta = np.linalg.lstsq(design, target, rcond=None)[0]
        return {
            "intercept": float(beta[0]),
            "coefficients": {name: float(b) for name, b in zip(params["features"], beta[1:], strict=True)},
            "count": table.num_rows,
        }


REGISTRY: dict[str, Operation] = {
    op.name: op for op in (Count(), Sum(), Mean(), Variance(), GroupBy(), Histogram(), Covariance(), LinearRegression())
}


def get_operation(name: str) -> Operation:
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise OperationRejected(
            f"unknown operation {name!r}; known: {', '.join(sorted(REGISTRY))}", code="unknown_operation"
        ) from None


def required_depth(name: str, params: dict[str, Any], layout: StoreLayout | None = None) -> int:
    """Multiplicative depth of the request. Without a layout, columns are taken as complete
    (a null-aware count adds a product of a filter with a presence series)."""
    operation = get_operation(name)
    if layout is not None:
        return operation.required_depth(params, layout)
    where = 1 if isinstance(params, dict) and params.get("where") else 0
    if name == "count" or name == "histogram":
        return where
    if name in ("sum", "mean"):
        return where
    if name == "group_by":
        return (0 if params.get("aggregate") == "count" else 1) + where
    return 1 + where
