"""Which columns a store encrypts, and how: the plan, then the first pass over the data.

``plan_columns`` picks the columns (numbers and booleans, categoricals of at most
``MAX_CATEGORIES``; dates and free text are not encrypted: no operation reads them) and their
levels. ``profile_columns`` streams the provider's batches once with bounded memory: per numeric
column the largest |x| (its scale: the smallest power of two bounding it), whether it has nulls,
and a fixed-size uniform sample for quantile bucket edges.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from dataspace.compute.he.keys import KeyPair
from dataspace.compute.he.layout import MAX_CATEGORIES, ColumnKind, ColumnPlan
from dataspace.compute.he.params import LEVELS, Level
from dataspace.compute.he.plaintext import Rounding, numeric_values, round_significant

SAMPLE_SIZE = 65_536  # quantile sample per numeric column (bounded memory, ~0.5% quantile error)
NUMERIC_TYPES = {"integer", "float", "boolean"}
EDGE_DIGITS = 3  # significant digits of quantile edges


@dataclass(frozen=True)
class StoreOptions:
    levels: dict[str, Level] = field(default_factory=dict)  # column -> level; default products
    buckets: dict[str, list[float]] = field(default_factory=dict)  # provider-chosen edges per numeric column
    quantile_buckets: int = 8  # numeric columns without provider edges get quantile edges
    workers: int = 2  # encryption processes


@dataclass(frozen=True)
class PlannedColumn:
    schema: dict[str, Any]  # the catalogue's schema entry
    kind: ColumnKind
    level: Level

    @property
    def name(self) -> str:
        return str(self.schema["name"])


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
    unknown = (set(options.levels) | set(options.buckets)) - {entry.name for entry in planned}
    if unknown:
        raise ValueError(f"options name columns that are not encrypted: {', '.join(sorted(unknown))}")
    return planned


@dataclass
class _NumericProfile:
    max_abs: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    nulls: int = 0
    sample_keys: np.ndarray = field(default_factory=lambda: np.empty(0))
    sample_values: np.ndarray = field(default_factory=lambda: np.empty(0))

    def add(self, values: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> None:
        self.nulls += int(len(valid) - valid.sum())
        present = values[valid]
        if not len(present):
            return
        self.max_abs = max(self.max_abs, float(np.max(np.abs(present))))
        self.minimum = min(self.minimum, float(present.min()))
        self.maximum = max(self.maximum, float(present.max()))
        # Bottom-k sampling: keep the values with the k smallest random keys, a uniform sample
        # without replacement of everything seen so far.
        keys = np.concatenate([self.sample_keys, rng.random(len(present))])
        values_all = np.concatenate([self.sample_values, present])
        if len(keys) > SAMPLE_SIZE:
            keep = np.argpartition(keys, SAMPLE_SIZE)[:SAMPLE_SIZE]
            keys, values_all = keys[keep], values_all[keep]
        self.sample_keys, self.sample_values = keys, values_all


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


def _bucket_edges(column: PlannedColumn, profile: _NumericProfile, options: StoreOptions) -> tuple[float, ...]:
    if column.name in options.buckets:
        edges = tuple(float(e) for e in options.buckets[column.name])
        if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
            raise ValueError(f"bucket edges of {column.name!r} must be at least two, strictly increasing")
        return edges
    if column.schema.get("type") == "boolean":
        return ()  # a 0/1 column's histogram is its sum
    return quantile_edges(profile.sample_values, profile.minimum, profile.maximum, options.quantile_buckets)


def profile_columns(
    batches: Iterator[pa.RecordBatch], planned: list[PlannedColumn], options: StoreOptions
) -> tuple[list[ColumnPlan], int]:
    """(the plan of every planned column, the rows read)."""
    rng = np.random.default_rng(0x5EED)
    numeric = {entry.name: _NumericProfile() for entry in planned if entry.kind == ColumnKind.NUMERIC}
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
            continue
        profile = numeric[entry.name]
        edges = _bucket_edges(entry, profile, options)
        plans.append(
            ColumnPlan(
                name=entry.name,
                kind=entry.kind,
                level=entry.level,
                scale=power_of_two_scale(profile.max_abs),
                has_nulls=profile.nulls > 0 or int(entry.schema.get("nulls") or 0) > 0,
                bucket_edges=edges,
                open_ends=bool(edges) and entry.name not in options.buckets,
            )
        )
    return plans, rows
