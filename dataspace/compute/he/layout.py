"""What an encrypted store holds: one plan per encrypted column and one blob per series.

A column becomes one or more *series*, each a run of ciphertexts of ``slots`` rows:

- ``num:<col>``       the numeric value x / scale (nulls stored as 0),
- ``present:<col>``   1 where the value is present, 0 where null (only for columns with nulls),
- ``cat:<col>:<i>``   1 where a categorical column equals ``categories[i]``,
- ``bucket:<col>:<i>`` 1 where a numeric value falls in bucket i.

A series may also have a materialised *total*: one ciphertext holding the series' sum over all
rows (normalised like the series), as a rotate-and-sum of the sum of its chunks would hold it, so
an unfiltered depth-0 aggregate reads one ciphertext instead of every chunk. It is read as the
series ``total:<key>``; layouts written before totals existed have none (``total_blob`` None) and
their aggregates stream the chunks.

The layout is custodian data (it carries each column's scale); ``view.public_view`` is what a
consumer may see. Its JSON is stored with the store: ``from_json`` reads every layout ever written.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any

from dataspace.compute.he.params import Level

MAX_CATEGORIES = 32
LAYOUT_VERSION = 1

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class ColumnKind(enum.StrEnum):
    NUMERIC = "numeric"  # integers, floats and booleans: a value series (and buckets)
    CATEGORICAL = "categorical"  # one indicator series per category


@dataclass(frozen=True)
class ColumnPlan:
    name: str
    kind: ColumnKind
    level: Level
    scale: float = 1.0  # numeric: stored value is x/scale (power of two >= max|x|); never in public_view
    has_nulls: bool = False  # numeric: a presence-indicator series is stored too (nulls stored as 0)
    categories: tuple[str, ...] = ()  # categorical: indicator series i <-> categories[i]
    bucket_edges: tuple[float, ...] = ()  # numeric: bucket i = [e[i], e[i+1]) (last one closed)
    # Quantile edges: the outer two are the column's extremes (rounded outwards), which no one is
    # shown, so the first and last buckets read as open ("below e[1]", "e[-2] and above").
    open_ends: bool = False

    def public_edges(self) -> list[float | None]:
        """The bucket edges as consumers see them: None at an open end."""
        edges: list[float | None] = list(self.bucket_edges)
        if self.open_ends and edges:
            edges[0] = edges[-1] = None
        return edges

    @property
    def series_keys(self) -> list[str]:
        if self.kind == ColumnKind.CATEGORICAL:
            return [category_key(self.name, i) for i in range(len(self.categories))]
        keys = [numeric_key(self.name)]
        if self.has_nulls:
            keys.append(presence_key(self.name))
        keys.extend(bucket_key(self.name, i) for i in range(max(len(self.bucket_edges) - 1, 0)))
        return keys

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"], data["level"] = self.kind.value, self.level.value
        data["categories"] = list(self.categories)
        data["bucket_edges"] = list(self.bucket_edges)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColumnPlan:
        return cls(
            name=str(data["name"]),
            kind=ColumnKind(data["kind"]),
            level=Level(data["level"]),
            scale=float(data.get("scale", 1.0)),
            has_nulls=bool(data.get("has_nulls", False)),
            categories=tuple(str(c) for c in data.get("categories", ())),
            bucket_edges=tuple(float(e) for e in data.get("bucket_edges", ())),
            open_ends=bool(data.get("open_ends", False)),
        )


@dataclass(frozen=True)
class SeriesInfo:
    key: str
    level: Level
    blob_name: str
    chunks: int
    sha256: str
    total_blob: str | None = None  # the materialised total (one framed ciphertext); None: not available
    total_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "level": self.level.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeriesInfo:
        return cls(**{**data, "level": Level(data["level"])})


def numeric_key(column: str) -> str:
    return f"num:{column}"


def presence_key(column: str) -> str:
    return f"present:{column}"


def category_key(column: str, index: int) -> str:
    return f"cat:{column}:{index}"


def bucket_key(column: str, index: int) -> str:
    return f"bucket:{column}:{index}"


TOTAL_PREFIX = "total:"


def total_key(key: str) -> str:
    """The name under which ``read_series`` reads the materialised total of series ``key``."""
    return TOTAL_PREFIX + key


def blob_name(prefix: str, key: str) -> str:
    """The series' blob. Column names are provider-chosen: anything outside a safe alphabet is
    replaced, and a digest of the key is appended then so two keys never share a blob."""
    safe = key.replace(":", ".")
    if not _SAFE_NAME.fullmatch(safe):
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", safe)[:80] + "-" + digest
    return f"{prefix}/{safe}.ct"


def total_blob_name(prefix: str, key: str) -> str:
    """The blob of the series' total: its series blob's name with ``.tot`` for ``.ct`` (series
    blobs all end in ``.ct``, so no total can share a name with a series)."""
    return blob_name(prefix, key).removesuffix(".ct") + ".tot"


@dataclass(frozen=True)
class StoreLayout:
    rows: int
    slots: int
    columns: tuple[ColumnPlan, ...]
    series: dict[str, SeriesInfo]

    def column(self, name: str) -> ColumnPlan:
        for plan in self.columns:
            if plan.name == name:
                return plan
        raise KeyError(name)

    def levels(self) -> set[Level]:
        return {plan.level for plan in self.columns}

    @property
    def chunks(self) -> int:
        return -(-self.rows // self.slots)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": LAYOUT_VERSION,
            "rows": self.rows,
            "slots": self.slots,
            "columns": [plan.to_json() for plan in self.columns],
            "series": {key: info.to_json() for key, info in self.series.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoreLayout:
        if data.get("version") != LAYOUT_VERSION:
            raise ValueError(f"unsupported store layout version {data.get('version')!r}")
        return cls(
            rows=int(data["rows"]),
            slots=int(data["slots"]),
            columns=tuple(ColumnPlan.from_json(c) for c in data["columns"]),
            series={key: SeriesInfo.from_json(info) for key, info in data["series"].items()},
        )
