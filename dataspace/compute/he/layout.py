"""What an encrypted store holds: one plan per encrypted column and one blob per series.

A column becomes one or more *series*, each a run of ciphertexts of ``slots`` rows:

- ``num:<col>``        the value clamped to the column's bounds, / scale (nulls stored as 0); only
                       for a column with bounds (an unbounded column's values are never released),
- ``present:<col>``    1 where the value is present, 0 where null (only for columns with nulls),
- ``nonzero:<col>``    1 where the clamped value is present and not 0: the rows that contribute to a
                       sum of x. Only where it differs from ``present`` (some value is 0) and the
                       column is not low-cardinality,
- ``value:<col>:<i>``  1 where the clamped value equals ``values[i]``, for a low-cardinality
                       column (few distinct values): each value's row count is a cohort,
- ``cat:<col>:<i>``    1 where a categorical column equals ``categories[i]``,
- ``bucket:<col>:<i>`` 1 where a numeric value falls in bucket i, ``below:<col>`` below the first
                       edge, ``above:<col>`` above the last (the last bucket is closed), ``null:<col>``
                       where it is null: the *cells*, which hold every row exactly once.

Bounds and bucket edges come from the provider (``declared``), from a differentially private
estimate (``estimated``, its zCDP rho recorded per column) or, for a non-personal dataset only,
from the data (``exact``). The scale is the smallest power of two bounding the bounds, so it says
nothing the bounds do not.

A series may also have a materialised *total*: one ciphertext holding the series' sum over all
rows (normalised like the series), as a rotate-and-sum of the sum of its chunks would hold it, so
an unfiltered depth-0 aggregate reads one ciphertext instead of every chunk. It is read as the
series ``total:<key>``; layouts written before totals existed have none (``total_blob`` None) and
their aggregates stream the chunks.

A store may also hold materialised *product totals*: for a pair of series (a, b), one ciphertext
holding the sum over all rows of a * b (normalised like the two series), computed in plaintext at
ingest and encrypted as a one-value vector. They are made for the group-by pairs the provider
declares (``StoreOptions.group_by``): every row series of the value column (value, presence,
contributors, low-cardinality values; not its cells) times every category indicator of the
categorical column, so a group-by's sums, counts and cohorts over that pair are depth-0 reads of one
ciphertext each instead of a ct x ct product per chunk. A term over an undeclared pair streams the
chunks as before. Read as ``product_key(a, b)``; layouts written before them have none.

Layouts written before bounds (version 1) still load: their numeric columns are ``legacy`` (values
stored unclamped under a data-derived scale, no nonzero, value or below/above/null series). They
have no bounds, so every operation that releases their values refuses them (``column_unbounded``),
unless the caller says the dataset is non-personal: then the data-derived scale is an ``exact``
bound, and a sum's contributors are its present rows.

Packed layouts (version 3). A series' full chunks are stored as above, but the rest is *packed*,
several values to a ciphertext, per level: every series' *tail* (its last ``rows % slots`` rows,
the whole series in a store smaller than one ciphertext) at its own run of slots, every series'
total and every product total at one slot each. A pack is one ciphertext of ``slots`` values (zero
where nothing is packed); ``SeriesInfo.tail``, ``SeriesInfo.total`` and ``ProductTotal.total`` say
where each sits (``PackedSlot``). The demo registry at 442 rows (40 series, 8 product totals)
thus takes 5 ciphertexts at N = 8192 where it took 88 (a padded one per series, one per total and
per product total). Sums of totals and product totals are read by the custodian from the pack, verbatim as
stored (``Pack.ciphertext_sha256``), at the slots its own layout names; a product over tails is
computed by the worker after rotating each tail to slot 0 and folded by the custodian over
``tail_rows`` slots only (``evaluation``). Layouts before version 3 keep their one-ciphertext
totals and padded last chunks, and still load and compute as before.

Version 4 is version 3 with the parameter set of each level recorded (``StoreLayout.params``, by
name: ``params.PARAM_SETS``): every blob of a level is of its level's set, the one its keys are of.
A store of at most ``params.SMALL_MAX_ROWS`` rows uses the N = 4096 sets (2,048 slots: its
``slots``), and then keeps every total and product total, of either level, unscaled in its
sums-level packs (``packing``); its products-level packs hold tails only. Layouts before version 4
record none and use the N = 8192 sets. Unpacked layouts (version 2, tests only) are N = 8192 only.

Every ciphertext a store holds (chunks and packs, at every version) is one TenSEAL vector message;
stores built since seeding hold seeded symmetric ciphertexts (``seeded``: half the bytes), older
ones full ciphertexts. The two load the same way, so the layout does not record which: a blob's
hash is the hash of its bytes either way. The demo registry at 442 rows takes ~0.58 MB (~33
bytes per value) seeded, 1.18 MB with full ciphertexts, at N = 8192; ~0.37 MB (~21) at N = 4096.

The layout is custodian data (scales, low-cardinality values, exact bounds); ``view.public_view`` is
what a consumer may see. Its JSON is stored with the store: ``from_json`` reads every layout ever
written.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dataspace.compute.he.params import LEVELS, PARAM_SETS, Level, ParamSet

MAX_CATEGORIES = 32
# 2: bounds, contributors, low-cardinality values, the cells of a bucketed column;
# 3: packed tails, totals and product totals (see the module docstring);
# 4: version 3 with the parameter set of each level recorded (small stores use N = 4096)
LAYOUT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class ColumnKind(enum.StrEnum):
    NUMERIC = "numeric"  # integers, floats and booleans: a value series (and buckets)
    CATEGORICAL = "categorical"  # one indicator series per category


class Source(enum.StrEnum):
    """Where a column's bounds or bucket edges came from."""

    DECLARED = "declared"  # the provider's (a boolean's [0, 1] is declared by its type)
    ESTIMATED = "estimated"  # differentially private quantiles, spending the column's ``rho``
    EXACT = "exact"  # the data itself: a non-personal dataset only


Cell = int | str  # a bucket's index, or one of BELOW, ABOVE, NULL
BELOW, ABOVE, NULL = "below", "above", "null"


@dataclass(frozen=True)
class ColumnPlan:
    name: str
    kind: ColumnKind
    level: Level
    scale: float = 1.0  # numeric: stored value is clamp(x)/scale (power of two >= max|bound|)
    has_nulls: bool = False  # numeric: a presence-indicator series is stored too (nulls stored as 0)
    categories: tuple[str, ...] = ()  # categorical: indicator series i <-> categories[i]
    bucket_edges: tuple[float, ...] = ()  # numeric: bucket i = [e[i], e[i+1]) (last one closed)
    # Exact quantile edges (non-personal datasets): the outer two are the column's extremes, which
    # no one is shown, so the first and last buckets read as open ("below e[1]", "e[-2] and above")
    # and no value lies below or above them.
    open_ends: bool = False
    bounds: tuple[float, float] | None = None  # numeric: every value clamped to [lo, hi]; None: unbounded
    bounds_source: Source | None = None
    edges_source: Source | None = None
    zeros: bool = True  # numeric: some present clamped value is 0 (so contributors != present rows)
    values: tuple[float, ...] = ()  # low-cardinality numeric: its distinct clamped values (never shown)
    rho: float = 0.0  # zCDP rho spent estimating this column's bounds and edges
    legacy: bool = False  # written before bounds (layout version 1): see the module docstring

    def public_edges(self) -> list[float | None]:
        """The bucket edges as consumers see them: None at an open end."""
        edges: list[float | None] = list(self.bucket_edges)
        if self.open_ends and edges:
            edges[0] = edges[-1] = None
        return edges

    def public_bounds(self) -> list[float] | None:
        """The bounds a consumer may see: the provider's or estimated ones. Exact bounds are the
        column's extremes, shown to no one."""
        if self.bounds is None or self.bounds_source == Source.EXACT:
            return None
        return list(self.bounds)

    @property
    def max_abs(self) -> float:
        """The largest |x| a row can contribute (0 for an unbounded column)."""
        return max(abs(self.bounds[0]), abs(self.bounds[1])) if self.bounds else 0.0

    @property
    def stores_values(self) -> bool:
        return self.kind == ColumnKind.NUMERIC and (self.bounds is not None or self.legacy)

    @property
    def has_nonzero_series(self) -> bool:
        """Whether contributors need their own series: some value is 0 and no nonzero value
        indicators exist to add up instead."""
        return (
            self.kind == ColumnKind.NUMERIC
            and self.bounds is not None
            and not self.legacy
            and self.zeros
            and not any(v != 0 for v in self.values)
        )

    @property
    def cells(self) -> list[Cell]:
        """The cells of a bucketed column in order: ``below``, the buckets, ``above``, ``null``.
        Without below and above where no value can lie there (open ends) and in a legacy layout
        (which has no cell series but its buckets); without ``null`` where no value is missing."""
        if not self.bucket_edges:
            return []
        buckets: list[Cell] = list(range(len(self.bucket_edges) - 1))
        if self.legacy:
            return buckets
        cells = buckets if self.open_ends else [BELOW, *buckets, ABOVE]
        return [*cells, NULL] if self.has_nulls else cells

    @property
    def series_keys(self) -> list[str]:
        if self.kind == ColumnKind.CATEGORICAL:
            return [category_key(self.name, i) for i in range(len(self.categories))]
        keys = [numeric_key(self.name)] if self.stores_values else []
        if self.has_nulls:
            keys.append(presence_key(self.name))
        if self.has_nonzero_series:
            keys.append(nonzero_key(self.name))
        keys.extend(value_key(self.name, i) for i in range(len(self.values)))
        keys.extend(cell_key(self.name, cell) for cell in self.cells)
        return keys

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"], data["level"] = self.kind.value, self.level.value
        data["categories"] = list(self.categories)
        data["bucket_edges"] = list(self.bucket_edges)
        data["bounds"] = list(self.bounds) if self.bounds is not None else None
        data["values"] = list(self.values)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], *, legacy: bool = False) -> ColumnPlan:
        bounds = data.get("bounds")
        return cls(
            name=str(data["name"]),
            kind=ColumnKind(data["kind"]),
            level=Level(data["level"]),
            scale=float(data.get("scale", 1.0)),
            has_nulls=bool(data.get("has_nulls", False)),
            categories=tuple(str(c) for c in data.get("categories", ())),
            bucket_edges=tuple(float(e) for e in data.get("bucket_edges", ())),
            open_ends=bool(data.get("open_ends", False)),
            bounds=(float(bounds[0]), float(bounds[1])) if bounds is not None else None,
            bounds_source=Source(data["bounds_source"]) if data.get("bounds_source") else None,
            edges_source=Source(data["edges_source"]) if data.get("edges_source") else None,
            zeros=bool(data.get("zeros", True)),
            values=tuple(float(v) for v in data.get("values", ())),
            rho=float(data.get("rho", 0.0)),
            legacy=legacy or bool(data.get("legacy", False)),
        )

    def with_exact_bounds(self) -> ColumnPlan:
        """A legacy numeric column of a non-personal dataset: its data-derived scale bounds every
        stored value (|x| <= scale, nothing was clamped), so it serves as an exact bound."""
        if self.kind != ColumnKind.NUMERIC or not self.legacy or self.bounds is not None:
            return self
        return replace(self, bounds=(-self.scale, self.scale), bounds_source=Source.EXACT)


@dataclass(frozen=True)
class PackedSlot:
    """Where a packed value sits: slot ``slot`` of the layout's pack ``pack`` (for a tail, its
    first row; the tail runs over ``StoreLayout.tail_rows`` slots from there)."""

    pack: int
    slot: int

    def to_json(self) -> list[int]:
        return [self.pack, self.slot]

    @classmethod
    def from_json(cls, data: Any) -> PackedSlot | None:
        return None if data is None else cls(pack=int(data[0]), slot=int(data[1]))


@dataclass(frozen=True)
class Pack:
    """One ciphertext of packed tails and totals, all of one level (see the module docstring)."""

    level: Level
    blob_name: str
    sha256: str  # of the blob
    ciphertext_sha256: str  # of the one ciphertext it holds: what a worker must send verbatim
    total_scale: float = 1.0  # the totals in it are stored divided by this (``packing``)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "level": self.level.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pack:
        return cls(**{**data, "level": Level(data["level"])})


@dataclass(frozen=True)
class SeriesInfo:
    key: str
    level: Level
    blob_name: str
    chunks: int  # ciphertexts in the blob: every chunk before version 3, the full chunks from it
    sha256: str
    total_blob: str | None = None  # the materialised total (one framed ciphertext); None: not available
    total_sha256: str | None = None
    tail: PackedSlot | None = None  # version 3: where the series' last rows % slots rows are packed
    total: PackedSlot | None = None  # version 3: where the series' total is packed

    @property
    def has_total(self) -> bool:
        return self.total_blob is not None or self.total is not None

    def to_json(self) -> dict[str, Any]:
        data = {**asdict(self), "level": self.level.value}
        for name in ("tail", "total"):
            slot = getattr(self, name)
            if slot is None:
                del data[name]  # a layout of version 2 or older writes the JSON it always wrote
            else:
                data[name] = slot.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeriesInfo:
        return cls(
            **{
                **data,
                "level": Level(data["level"]),
                "tail": PackedSlot.from_json(data.get("tail")),
                "total": PackedSlot.from_json(data.get("total")),
            }
        )


def numeric_key(column: str) -> str:
    return f"num:{column}"


def presence_key(column: str) -> str:
    return f"present:{column}"


def nonzero_key(column: str) -> str:
    return f"nonzero:{column}"


def value_key(column: str, index: int) -> str:
    return f"value:{column}:{index}"


def category_key(column: str, index: int) -> str:
    return f"cat:{column}:{index}"


def bucket_key(column: str, index: int) -> str:
    return f"bucket:{column}:{index}"


def cell_key(column: str, cell: Cell) -> str:
    """The indicator series of one cell of a bucketed column."""
    if isinstance(cell, int):
        return bucket_key(column, cell)
    if cell not in (BELOW, ABOVE, NULL):
        raise ValueError(f"no cell {cell!r}")
    return f"{cell}:{column}"


TOTAL_PREFIX = "total:"


def total_key(key: str) -> str:
    """The name under which ``read_series`` reads the materialised total of series ``key``."""
    return TOTAL_PREFIX + key


PACK_PREFIX = "pack:"


def pack_key(index: int) -> str:
    """The name under which ``read_series`` reads pack ``index`` (and a result carries it)."""
    return f"{PACK_PREFIX}{index}"


PRODUCT_PREFIX = "product:"


def product_key(a: str, b: str) -> str:
    """The name under which ``read_series`` reads the materialised total of series a times series b
    (either order). JSON keeps the pair apart whatever the column names hold."""
    return PRODUCT_PREFIX + json.dumps(sorted((a, b)))


@dataclass(frozen=True)
class ProductTotal:
    """The materialised total of the product of two series (see the module docstring)."""

    keys: tuple[str, str]
    level: Level
    blob_name: str | None = None  # before version 3: its own blob of one ciphertext
    sha256: str | None = None
    total: PackedSlot | None = None  # version 3: where it is packed

    @property
    def key(self) -> str:
        return product_key(*self.keys)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"keys": list(self.keys), "level": self.level.value}
        if self.total is not None:
            data["total"] = self.total.to_json()
        else:
            data["blob_name"], data["sha256"] = self.blob_name, self.sha256
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProductTotal:
        a, b = data["keys"]
        return cls(
            keys=(str(a), str(b)),
            level=Level(data["level"]),
            blob_name=data.get("blob_name"),
            sha256=data.get("sha256"),
            total=PackedSlot.from_json(data.get("total")),
        )


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


def product_blob_name(prefix: str, a: str, b: str) -> str:
    """The blob of a product total: ``.ptot``, a suffix no series or total blob has."""
    return blob_name(prefix, product_key(a, b)).removesuffix(".ct") + ".ptot"


def pack_blob_name(prefix: str, index: int) -> str:
    """The blob of pack ``index``: ``.pack``, a suffix no other blob has."""
    return f"{prefix}/{index}.pack"


@dataclass(frozen=True)
class StoreLayout:
    rows: int
    slots: int
    columns: tuple[ColumnPlan, ...]
    series: dict[str, SeriesInfo]
    non_personal: bool = False  # built for a non-personal dataset (exact bounds and edges allowed)
    products: dict[str, ProductTotal] = field(default_factory=dict)  # by ``product_key``
    packed: bool = False  # version 3: tails, totals and product totals packed (see the module docstring)
    packs: tuple[Pack, ...] = ()
    # Version 4: the parameter set (``params.PARAM_SETS``) of each level's keys, so of every blob
    # of that level. Empty before: every level then uses its N = 8192 set (``params.LEVELS``).
    params: dict[Level, str] = field(default_factory=dict)

    def param_set(self, level: Level | str) -> ParamSet:
        """The parameter set of every blob (and key) of ``level`` in this store."""
        name = self.params.get(Level(level))
        return LEVELS[Level(level)] if name is None else PARAM_SETS[name]

    def column(self, name: str) -> ColumnPlan:
        for plan in self.columns:
            if plan.name == name:
                return plan
        raise KeyError(name)

    def levels(self) -> set[Level]:
        return {plan.level for plan in self.columns}

    @property
    def chunks(self) -> int:
        """Chunks a series' blob holds: every chunk, the last padded, before version 3; the full
        ones from it (its tail is packed)."""
        return self.rows // self.slots if self.packed else -(-self.rows // self.slots)

    @property
    def tail_rows(self) -> int:
        """Rows of every series packed as its tail (0 before version 3)."""
        return self.rows % self.slots if self.packed else 0

    def blob_names(self) -> list[str]:
        """Every ciphertext blob of the store: series, totals, product totals, packs."""
        names = [name for info in self.series.values() for name in (info.blob_name, info.total_blob) if name]
        names += [product.blob_name for product in self.products.values() if product.blob_name]
        return names + [pack.blob_name for pack in self.packs]

    @property
    def rho_spent(self) -> float:
        """The zCDP rho the build spent estimating bounds and edges (the dataset's ledger owes it)."""
        return sum(plan.rho for plan in self.columns)

    def to_json(self) -> dict[str, Any]:
        packed: dict[str, Any] = {"packs": [pack.to_json() for pack in self.packs]} if self.packed else {}
        if self.params:
            packed["params"] = {level.value: name for level, name in sorted(self.params.items())}
        return {
            # A layout read from an older version writes that version again: its stored JSON is unchanged.
            "version": LAYOUT_VERSION if self.params else 3 if self.packed else 2,
            "rows": self.rows,
            "slots": self.slots,
            "non_personal": self.non_personal,
            "rho_spent": self.rho_spent,
            "columns": [plan.to_json() for plan in self.columns],
            "series": {key: info.to_json() for key, info in self.series.items()},
            "products": [product.to_json() for product in self.products.values()],
            **packed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, non_personal: bool = False) -> StoreLayout:
        """The layout stored as ``data``. ``non_personal`` matters only for a layout written before
        bounds (version 1), which does not record it: whether its dataset is non-personal, so its
        data-derived scales may serve as exact bounds. A newer layout records what it was built for."""
        version = data.get("version")
        if version not in READABLE_VERSIONS:
            raise ValueError(f"unsupported store layout version {version!r}")
        legacy = version == 1
        columns = tuple(ColumnPlan.from_json(c, legacy=legacy) for c in data["columns"])
        if legacy and non_personal:
            columns = tuple(plan.with_exact_bounds() for plan in columns)
        return cls(
            rows=int(data["rows"]),
            slots=int(data["slots"]),
            columns=columns,
            series={key: SeriesInfo.from_json(info) for key, info in data["series"].items()},
            non_personal=bool(data.get("non_personal", non_personal if legacy else False)),
            products={p.key: p for p in map(ProductTotal.from_json, data.get("products", []))},
            packed=version in (3, 4),
            packs=tuple(Pack.from_json(p) for p in data.get("packs", [])),
            params=_params_from_json(data.get("params", {})) if version == 4 else {},
        )


def _params_from_json(data: dict[str, str]) -> dict[Level, str]:
    params = {Level(level): str(name) for level, name in data.items()}
    for level, name in params.items():
        if name not in PARAM_SETS or PARAM_SETS[name].level != level:
            raise ValueError(f"unknown parameter set {name!r} for the {level.value!r} level")
    return params
