"""Which columns a store encrypts, and how: the plan, then the first pass over the data.

``plan_columns`` picks the columns (numbers and booleans, categoricals of at most
``MAX_CATEGORIES``; dates and free text are not encrypted: no operation reads them) and their
levels. ``profile_columns`` streams the provider's batches once with bounded memory and settles
each numeric column's plan:

- its *bounds*, the range every value is clamped to before it is encrypted: the provider's
  (``StoreOptions.bounds``; a boolean's are [0, 1]); else, for a non-personal dataset, the exact
  minimum and maximum; else, with ``estimate_bounds_rho`` > 0, a differentially private estimate
  (``estimation``); else none, and the column's values are not stored at all (operations that
  release them refuse it: ``column_unbounded``). The scale is the smallest power of two bounding
  the bounds: never a fact about the data that the bounds do not already state;
- its *bucket edges*, chosen the same way: the provider's; else exact quantiles of a bounded
  sample (non-personal only, outer edges the extremes, shown as open ends); else the estimated
  bounds' range cut at private quantiles; else none. Booleans get none (their histogram is their sum);
- whether some clamped value is 0 (then a ``nonzero`` series tells contributors from present
  rows), and, for a column with at most ``MAX_LOW_CARDINALITY`` distinct values, those values
  (each gets an indicator series whose row count is a cohort of every term the column enters).

The rho of ``estimate_bounds_rho`` is shared evenly by the columns that need an estimate; each
plan records what its release spent (``ColumnPlan.rho``, summed in ``StoreLayout.rho_spent``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from dataspace.compute.he import estimation
from dataspace.compute.he.keys import KeyPair
from dataspace.compute.he.layout import MAX_CATEGORIES, ColumnKind, ColumnPlan, Source
from dataspace.compute.he.params import LEVELS, Level
from dataspace.compute.he.plaintext import Rounding, clamped, numeric_values, round_significant

SAMPLE_SIZE = 65_536  # quantile sample per numeric column (bounded memory, ~0.5% quantile error)
NUMERIC_TYPES = {"integer", "float", "boolean"}
EDGE_DIGITS = 3  # significant digits of quantile edges
MAX_LOW_CARDINALITY = 8  # a numeric column with at most this many distinct values is treated as categorical for k
MAX_EDGES = 65


@dataclass(frozen=True)
class StoreOptions:
    levels: dict[str, Level] = field(default_factory=dict)  # column -> level; default products
    buckets: dict[str, list[float]] = field(default_factory=dict)  # provider-chosen edges per numeric column
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)  # provider-declared [lo, hi] per column
    quantile_buckets: int = 8  # numeric columns without provider edges get this many quantile buckets
    # What may stand in for the provider's bounds and edges (the dataset's privacy settings). The
    # defaults spend nothing and read nothing from the data: an undeclared column is unbounded.
    non_personal: bool = False  # exact bounds and quantile edges from the data may be used
    estimate_bounds_rho: float = 0.0  # zCDP rho the build may spend estimating missing bounds and edges
    workers: int = 2  # encryption processes
    # Declared group-by pairs, categorical column -> numeric columns: their value x indicator
    # products are summed at ingest (``layout`` product totals), so such a group-by reads one
    # ciphertext per term. Both columns must be stored at the products level.
    group_by: dict[str, list[str]] = field(default_factory=dict)
    # Pack tails, totals and product totals (layout version 3). False writes the version-2 layout
    # (a padded last chunk and one ciphertext per total): kept so the tests can build the stores
    # written before packing and prove they still compute.
    pack: bool = True
    # Seeded symmetric ciphertexts (``seeded``: about half the bytes, loaded unchanged). False
    # writes full ciphertexts, as every store before them: kept so the tests and the benchmark
    # can build those stores and prove they still load and compute.
    seeded: bool = True


@dataclass(frozen=True)
class PlannedColumn:
    schema: dict[str, Any]  # the catalogue's schema entry
    kind: ColumnKind
    level: Level

    @property
    def name(self) -> str:
        return str(self.schema["name"])

    @property
    def is_boolean(self) -> bool:
        return self.schema.get("type") == "boolean"


def _check_bounds(name: str, bounds: Any) -> tuple[float, float]:
    lo, hi = (float(b) for b in bounds)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"bounds of {name!r} must be two finite numbers, the first below the second")
    return lo, hi


def plan_columns(
    schema: list[dict[str, Any]], options: StoreOptions, keys: dict[Level, KeyPair]
) -> list[PlannedColumn]:
    """Every column the store will encrypt, with its kind and level."""
    planned = []
    for column in schema:
        name, kind = column["name"], column.get("type")
        level = options.levels.get(name, Level.PRODUCTS)
        if level not in LEVELS:
            raise ValueError(f"column {name!r}: unknown level {level!r}")
        if kind in NUMERIC_TYPES:
            planned.append(PlannedColumn(column, ColumnKind.NUMERIC, Level(level)))
        elif kind == "categorical":
            categories = column.get("categories") or []
            cardinality = column.get("cardinality", len(categories))
            if not categories or cardinality > MAX_CATEGORIES or len(categories) > MAX_CATEGORIES:
                continue  # too many indicator series to be worth encrypting
            planned.append(PlannedColumn(column, ColumnKind.CATEGORICAL, Level(level)))
    for entry in planned:
        if entry.level not in keys:
            raise ValueError(f"column {entry.name!r} needs {entry.level.value!r} keys, which were not generated")
    unknown = (set(options.levels) | set(options.buckets) | set(options.bounds)) - {entry.name for entry in planned}
    if unknown:
        raise ValueError(f"options name columns that are not encrypted: {', '.join(sorted(unknown))}")
    kinds = {entry.name: entry for entry in planned}
    for by, columns in options.group_by.items():
        for name, kind in ((by, ColumnKind.CATEGORICAL), *((column, ColumnKind.NUMERIC) for column in columns)):
            found = kinds.get(name)
            if found is None or found.kind != kind:
                raise ValueError(f"group_by {by!r}: {name!r} is not an encrypted {kind.value} column")
            if found.level != Level.PRODUCTS:
                raise ValueError(f"group_by {by!r}: {name!r} is stored for sums only and cannot enter a product")
    for entry in planned:
        if entry.name in options.bounds:
            if entry.kind != ColumnKind.NUMERIC:
                raise ValueError(f"bounds of {entry.name!r}: not a numeric column")
            _check_bounds(entry.name, options.bounds[entry.name])
    return planned


@dataclass
class _NumericProfile:
    sample: bool  # keep a uniform sample (exact quantile edges)
    grid: bool  # count values per candidate bin (estimated bounds and edges)
    minimum: float = math.inf
    maximum: float = -math.inf
    nulls: int = 0
    negative: bool = False
    zero: bool = False
    positive: bool = False
    distinct: set[float] | None = field(default_factory=set)  # None once past MAX_LOW_CARDINALITY
    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(estimation.CANDIDATES) - 1, dtype=np.int64))
    sample_keys: np.ndarray = field(default_factory=lambda: np.empty(0))
    sample_values: np.ndarray = field(default_factory=lambda: np.empty(0))

    def add(self, values: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> None:
        self.nulls += int(len(valid) - valid.sum())
        present = values[valid]
        if not len(present):
            return
        self.minimum = min(self.minimum, float(present.min()))
        self.maximum = max(self.maximum, float(present.max()))
        self.negative |= self.minimum < 0
        self.positive |= self.maximum > 0
        self.zero = self.zero or bool((present == 0).any())
        if self.distinct is not None:
            self.distinct.update(np.unique(present).tolist())
            if len(self.distinct) > MAX_LOW_CARDINALITY:
                self.distinct = None
        if self.grid:
            self.counts += estimation.bin_counts(present)
        if self.sample:
            # Bottom-k sampling: keep the values with the k smallest random keys, a uniform
            # sample without replacement of everything seen so far.
            keys = np.concatenate([self.sample_keys, rng.random(len(present))])
            values_all = np.concatenate([self.sample_values, present])
            if len(keys) > SAMPLE_SIZE:
                keep = np.argpartition(keys, SAMPLE_SIZE)[:SAMPLE_SIZE]
                keys, values_all = keys[keep], values_all[keep]
            self.sample_keys, self.sample_values = keys, values_all

    def has_clamped_zero(self, bounds: tuple[float, float]) -> bool:
        """Whether some present value is 0 once clamped to ``bounds``."""
        lo, hi = bounds
        return (lo <= 0 <= hi and self.zero) or (lo == 0 and self.negative) or (hi == 0 and self.positive)


def power_of_two_scale(max_abs: float) -> float:
    if max_abs <= 0 or not math.isfinite(max_abs):
        return 1.0
    return float(2.0 ** math.ceil(math.log2(max_abs)))


def quantile_edges(sample: np.ndarray, minimum: float, maximum: float, buckets: int) -> tuple[float, ...]:
    """Edges at the sample's quantiles, rounded to 3 significant digits (a consumer reads
    "20.5-31" more easily than "20.4817-31.0093", and rounding blurs the sample) and
    deduplicated; the outer edges are the exact range rounded outwards so every value lands
    in a bucket."""
    if not len(sample) or not math.isfinite(minimum) or buckets < 1:
        return ()
    inner = np.quantile(sample, np.linspace(0, 1, buckets + 1)[1:-1]) if buckets > 1 else np.empty(0)
    edges = [
        round_significant(minimum, EDGE_DIGITS, Rounding.DOWN),
        *(round_significant(float(q), EDGE_DIGITS) for q in inner),
        round_significant(maximum, EDGE_DIGITS, Rounding.UP),
    ]
    unique = sorted(set(edges))
    inside = [e for e in unique if unique[0] <= e <= unique[-1]]
    if len(inside) < 2:  # a constant column: one bucket holding the value
        return (minimum, maximum) if minimum < maximum else (minimum, minimum + 1.0)
    return tuple(inside)


def _declared_edges(name: str, edges: list[float]) -> tuple[float, ...]:
    out = tuple(float(e) for e in edges)
    if not 2 <= len(out) <= MAX_EDGES or not all(math.isfinite(e) for e in out) or list(out) != sorted(set(out)):
        raise ValueError(f"bucket edges of {name!r} must be 2 to {MAX_EDGES} finite numbers, strictly increasing")
    return out


@dataclass(frozen=True)
class _Choice:
    """What a numeric column lacks from its provider, and what may stand in for it."""

    declared_bounds: tuple[float, float] | None
    declared_edges: tuple[float, ...] | None
    wants_edges: bool  # edges are wanted and not declared

    @property
    def estimating(self) -> bool:
        return self.declared_bounds is None or self.wants_edges


def _choice(entry: PlannedColumn, options: StoreOptions) -> _Choice:
    bounds = options.bounds.get(entry.name)
    declared = _check_bounds(entry.name, bounds) if bounds is not None else (0.0, 1.0) if entry.is_boolean else None
    edges = _declared_edges(entry.name, options.buckets[entry.name]) if entry.name in options.buckets else None
    wants = edges is None and not entry.is_boolean and options.quantile_buckets >= 1
    return _Choice(declared, edges, wants)


def _numeric_plan(
    entry: PlannedColumn, profile: _NumericProfile, choice: _Choice, options: StoreOptions, rho: float
) -> ColumnPlan:
    bounds, bounds_source = choice.declared_bounds, Source.DECLARED if choice.declared_bounds else None
    edges: tuple[float, ...] = choice.declared_edges or ()
    edges_source = Source.DECLARED if edges else None
    spent, open_ends = 0.0, False
    if options.non_personal:
        if bounds is None:
            present = math.isfinite(profile.minimum)
            bounds = (profile.minimum, profile.maximum) if present else (0.0, 0.0)
            bounds_source = Source.EXACT
        if choice.wants_edges:
            edges = quantile_edges(profile.sample_values, profile.minimum, profile.maximum, options.quantile_buckets)
            edges_source, open_ends = (Source.EXACT, True) if edges else (None, False)
    elif rho > 0 and choice.estimating:
        estimate = estimation.estimate(
            profile.counts,
            rho=rho,
            buckets=options.quantile_buckets if choice.wants_edges else 0,
            bounds=bounds,
        )
        spent = estimate.rho
        if bounds is None:
            bounds, bounds_source = estimate.bounds, Source.ESTIMATED
        if choice.wants_edges:
            edges, edges_source = (estimate.bounds[0], *estimate.inner_edges, estimate.bounds[1]), Source.ESTIMATED
    values: tuple[float, ...] = ()
    if bounds is not None and profile.distinct is not None:
        distinct = np.asarray(sorted(profile.distinct), dtype=np.float64)
        values = tuple(sorted(set(clamped(distinct, np.ones(len(distinct), bool), bounds).tolist())))
    return ColumnPlan(
        name=entry.name,
        kind=entry.kind,
        level=entry.level,
        scale=power_of_two_scale(max(abs(bounds[0]), abs(bounds[1]))) if bounds else 1.0,
        has_nulls=profile.nulls > 0 or int(entry.schema.get("nulls") or 0) > 0,
        bucket_edges=edges,
        open_ends=open_ends,
        bounds=bounds,
        bounds_source=bounds_source,
        edges_source=edges_source,
        zeros=profile.has_clamped_zero(bounds) if bounds else True,
        values=values,
        rho=spent,
    )


def profile_columns(
    batches: Iterator[pa.RecordBatch], planned: list[PlannedColumn], options: StoreOptions
) -> tuple[list[ColumnPlan], int]:
    """(the plan of every planned column, the rows read)."""
    rng = np.random.default_rng(0x5EED)
    choices = {entry.name: _choice(entry, options) for entry in planned if entry.kind == ColumnKind.NUMERIC}
    estimating = options.estimate_bounds_rho > 0 and not options.non_personal
    share = options.estimate_bounds_rho / max(1, sum(c.estimating for c in choices.values())) if estimating else 0.0
    numeric = {
        name: _NumericProfile(sample=options.non_personal and choice.wants_edges, grid=estimating and choice.estimating)
        for name, choice in choices.items()
    }
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        for name, profile in numeric.items():
            values, valid = numeric_values(batch.column(name))
            profile.add(values, valid, rng)
    plans = []
    for entry in planned:
        if entry.kind == ColumnKind.CATEGORICAL:
            categories = tuple(map(str, entry.schema["categories"]))
            plans.append(ColumnPlan(name=entry.name, kind=entry.kind, level=entry.level, categories=categories))
        else:
            plans.append(_numeric_plan(entry, numeric[entry.name], choices[entry.name], options, share))
    return plans, rows
