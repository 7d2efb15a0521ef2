"""Encrypting a dataset's columns into a store: the engine's entry point, ``encrypt_columns``.

Two passes over the data, each streaming the provider's batches with bounded memory: the profile
(``profiling``: bounds, edges, which indicator series), then the encryption, which clamps every
value to its column's bounds before anything else is derived from it (its series, its contributors
and value indicators; the buckets read the value itself). Rows are cut into blocks of
``BLOCK_CHUNKS * slots``; every series' block goes to a worker process (``executors``) that
encrypts it with the symmetric secret context (seeded ciphertexts, ``seeded``, unless
``StoreOptions.seeded`` is off), and this process appends the ciphertexts to the series' blob
(``framing``) in order.
Meanwhile it sums each series' plaintext (normalised) values; at the end every series' total is
encrypted too, as a one-value vector: what rotate-and-sum of the sum of its chunks would decrypt
to (slot 0), with less noise (one fresh encryption instead of the chunks' noise and twelve
rotations). It fits wherever the rotate-and-sum total fits, which ``max_rows`` guarantees.
The declared group-by pairs' product totals (``layout``) are summed in plaintext during the first
pass, from the same clamped series values, and encrypted the same way.

A packed store (layout version 3, the default) writes only each series' full chunks to its blob
and keeps its last ``rows % slots`` rows, its tail, in memory; once every series is done, the
tails, the totals and the product totals are placed in packs (``packing``) and each pack is
encrypted as one ciphertext. The keys' parameter sets (``KeyPair.params``) decide the ring: with
the small sets (``params``, a store of at most ``SMALL_MAX_ROWS`` rows) every total goes to the
sums-level packs, so sums-level keys are needed whatever the columns' levels; the layout records
the sets (version 4).
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa

from dataspace.compute.he import packing
from dataspace.compute.he.executors import EncryptionWorkers, encrypt_block, encrypt_total
from dataspace.compute.he.framing import FramedWriter, write_framed
from dataspace.compute.he.keys import KeyPair
from dataspace.compute.he.layout import (
    ABOVE,
    BELOW,
    NULL,
    ColumnKind,
    ColumnPlan,
    Pack,
    ProductTotal,
    SeriesInfo,
    StoreLayout,
    blob_name,
    category_key,
    cell_key,
    nonzero_key,
    numeric_key,
    pack_blob_name,
    presence_key,
    product_blob_name,
    product_key,
    total_blob_name,
    value_key,
)
from dataspace.compute.he.params import Level, small_ring
from dataspace.compute.he.plaintext import (
    ABOVE_CELL,
    BELOW_CELL,
    NULL_CELL,
    category_index,
    cell_index,
    clamped,
    numeric_values,
)
from dataspace.compute.he.profiling import StoreOptions, plan_columns, profile_columns
from dataspace.vault import blobs

BLOCK_CHUNKS = 8  # chunks per worker task: large enough to amortise the pipe, small enough to stream
MAX_OPEN_SERIES = 128  # series encrypted per pass over the data (open blobs, buffered blocks)

Batches = Callable[[], Iterator[pa.RecordBatch]]


def encrypt_columns(
    *,
    batches: Batches,
    schema: list[dict[str, Any]],
    rows: int,
    options: StoreOptions,
    keys: dict[Level, KeyPair],
    blob_prefix: str,
) -> StoreLayout:
    """Encrypts every numeric and categorical column of the dataset into series blobs under
    ``blob_prefix``; ``batches()`` reads the data afresh for each pass. On any failure the blobs
    written so far are deleted before it raises; no worker process outlives the call."""
    planned = plan_columns(schema, options, keys)
    levels_used = {entry.level for entry in planned}
    params = {Level(level): pair.param_set for level, pair in keys.items()}
    for level in levels_used:
        if rows > params[level].max_rows:
            raise ValueError(
                f"{rows} rows exceed the {params[level].name!r} parameter set's {params[level].max_rows}-row capacity"
            )
    slots = {p.slots for p in params.values()}
    if len(slots) != 1:
        raise ValueError("all levels must share one slot count")
    slot_count = slots.pop()
    small = any(small_ring(p) for p in params.values())
    if small and not options.pack:
        raise ValueError("a small store (N = 4096) is written packed only")
    if small and planned:
        # Every total of a small store sits in a sums-level pack (``packing``): its keys are needed.
        if Level.SUMS not in keys:
            raise ValueError("a small store needs sums-level keys for its totals")
        levels_used.add(Level.SUMS)
    secret = {level: pair.secret_context for level, pair in keys.items() if level in levels_used}
    with EncryptionWorkers(options.workers if planned else 1, secret, seeded=options.seeded) as workers:
        plans, profiled_rows = profile_columns(batches(), planned, options)
        if profiled_rows != rows:
            raise ValueError(f"the data has {profiled_rows} rows, the catalogue says {rows}")
        in_flight_limit = 4 * max(1, options.workers)
        pairs = product_pairs(plans, options.group_by)
        series, products, packs = _encrypt_all(
            batches,
            plans,
            pairs,
            workers.ready(),
            slot_count,
            blob_prefix,
            rows,
            in_flight_limit,
            options.pack,
            Level.SUMS if small else None,
        )
    return StoreLayout(
        rows=rows,
        slots=slot_count,
        columns=tuple(plans),
        series=series,
        non_personal=options.non_personal,
        products=products,
        packed=options.pack,
        packs=packs,
        # Recorded with every packed store (version 4): the level of each blob names its set.
        params={level: params[level].name for level in sorted(levels_used)} if options.pack else {},
    )


def product_pairs(plans: list[ColumnPlan], group_by: dict[str, list[str]]) -> list[tuple[ColumnPlan, str, str]]:
    """The series pairs whose product totals a declared group-by reads: every row series of the
    value column but its cells (value, presence, contributors, low-cardinality values) times every
    category indicator; with the value column's plan (the products' level)."""
    by_name = {plan.name: plan for plan in plans}
    pairs: dict[tuple[str, str], ColumnPlan] = {}
    for by, columns in group_by.items():
        indicators = by_name[by].series_keys
        for column in columns:
            plan = by_name[column]
            cells = {cell_key(plan.name, cell) for cell in plan.cells}
            for key in plan.series_keys:
                if key not in cells:
                    pairs.update({(key, indicator): plan for indicator in indicators})
    return [(plan, a, b) for (a, b), plan in pairs.items()]


class _SeriesWriter:
    def __init__(self, key: str, level: Level, blob_prefix: str) -> None:
        self.key, self.level = key, level
        self.blob = FramedWriter(blob_name(blob_prefix, key))
        self.total_name = total_blob_name(blob_prefix, key)
        self.partial_sums: list[float] = []  # plaintext (normalised) sum of each submitted block
        self.total_sha256: str | None = None
        self.tail: np.ndarray | None = None  # packed stores: the last rows % slots values, to be packed

    def write_total(self, chunk: bytes) -> None:
        self.total_sha256 = write_framed(self.total_name, [chunk])

    def close(self) -> SeriesInfo:
        sha256 = self.blob.close()
        return SeriesInfo(
            key=self.key,
            level=self.level,
            blob_name=self.blob.name,
            chunks=self.blob.chunks,
            sha256=sha256,
            total_blob=self.total_name if self.total_sha256 else None,
            total_sha256=self.total_sha256,
        )


def _encrypt_all(
    batches: Batches,
    plans: list[ColumnPlan],
    pairs: list[tuple[ColumnPlan, str, str]],
    executor: Executor,
    slots: int,
    blob_prefix: str,
    rows: int,
    in_flight_limit: int,
    pack: bool,
    totals_level: Level | None = None,
) -> tuple[dict[str, SeriesInfo], dict[str, ProductTotal], tuple[Pack, ...]]:
    """Every series of ``plans``, at most ``MAX_OPEN_SERIES`` per pass over the data, and the
    product totals of ``pairs`` (summed in the first pass); packed, the packs of their tails and totals."""
    all_keys = [(plan, key) for plan in plans for key in plan.series_keys]
    series: dict[str, SeriesInfo] = {}
    products: dict[str, ProductTotal] = {}
    written: list[str] = [] if pack else [product_blob_name(blob_prefix, a, b) for _, a, b in pairs]
    tails: list[tuple[str, Level, np.ndarray]] = []
    totals: list[tuple[str, Level, float]] = []
    product_sums: dict[tuple[str, str], list[float]] = {}
    packs: tuple[Pack, ...] = ()
    try:
        for start in range(0, len(all_keys), MAX_OPEN_SERIES):
            group = all_keys[start : start + MAX_OPEN_SERIES]
            sums: dict[tuple[str, str], list[float]] | None = {(a, b): [] for _, a, b in pairs} if start == 0 else None
            writers: dict[str, _SeriesWriter] = {}
            try:
                for plan, key in group:
                    writers[key] = _SeriesWriter(key, plan.level, blob_prefix)
                    written += [writers[key].blob.name, writers[key].total_name]
                # The first pass also reads the columns of every product, whichever group they are in.
                needed = {q.name for q, _ in group} | (
                    {n for _, a, b in pairs for n in _columns(plans, a, b)} if sums is not None else set()
                )
                group_plans = [p for p in plans if p.name in needed]
                encrypted_rows = _encrypt_pass(
                    batches(), group_plans, writers, executor, slots, in_flight_limit, sums or {}, pack
                )
            finally:
                infos = [writer.close() for writer in writers.values()]
            if encrypted_rows != rows:
                raise ValueError(f"the data changed between passes: {encrypted_rows} rows, expected {rows}")
            series.update({info.key: info for info in infos})
            for writer in writers.values():
                if writer.tail is not None:
                    tails.append((writer.key, writer.level, writer.tail))
                totals.append((writer.key, writer.level, math.fsum(writer.partial_sums)))
            if sums is not None:
                if pack:
                    product_sums = sums
                else:
                    products = _write_products(pairs, sums, executor, blob_prefix)
        if pack:
            totals += [(product_key(a, b), plan.level, math.fsum(product_sums[a, b])) for plan, a, b in pairs]
            assignment = packing.assign(slots=slots, rows=rows, tails=tails, totals=totals, totals_level=totals_level)
            packs = _write_packs(assignment, executor, blob_prefix, slots, written)
            series = {
                key: replace(info, tail=assignment.tails.get(key), total=assignment.totals[key])
                for key, info in series.items()
            }
            for plan, a, b in pairs:
                product = ProductTotal(keys=(a, b), level=plan.level, total=assignment.totals[product_key(a, b)])
                products[product.key] = product
    except BaseException:
        for name in written:
            if blobs.exists(name):
                blobs.delete(name)
        raise
    return series, products, packs


def _write_packs(
    assignment: packing.Assignment, executor: Executor, blob_prefix: str, slots: int, written: list[str]
) -> tuple[Pack, ...]:
    """Each pack encrypted as one ciphertext of ``slots`` values, in a blob of its own (its name
    appended to ``written`` before it is written)."""
    futures = [executor.submit(encrypt_block, plan.level, plan.values, slots) for plan in assignment.packs]
    packs = []
    for index, (plan, future) in enumerate(zip(assignment.packs, futures, strict=True)):
        (ciphertext,) = future.result()
        name = pack_blob_name(blob_prefix, index)
        written.append(name)
        packs.append(
            Pack(
                level=plan.level,
                blob_name=name,
                sha256=write_framed(name, [ciphertext]),
                ciphertext_sha256=hashlib.sha256(ciphertext).hexdigest(),
                total_scale=plan.total_scale,
            )
        )
    return tuple(packs)


def _columns(plans: list[ColumnPlan], *keys: str) -> list[str]:
    """The columns whose series ``keys`` are."""
    return [plan.name for plan in plans if any(key in plan.series_keys for key in keys)]


def _write_products(
    pairs: list[tuple[ColumnPlan, str, str]],
    sums: dict[tuple[str, str], list[float]],
    executor: Executor,
    blob_prefix: str,
) -> dict[str, ProductTotal]:
    futures = [(plan, a, b, executor.submit(encrypt_total, plan.level, math.fsum(sums[a, b]))) for plan, a, b in pairs]
    products = {}
    for plan, a, b, future in futures:
        name = product_blob_name(blob_prefix, a, b)
        product = ProductTotal(
            keys=(a, b), level=plan.level, blob_name=name, sha256=write_framed(name, [future.result()])
        )
        products[product.key] = product
    return products


def _series_values(plan: ColumnPlan, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    """Every series of one column for one slice of rows."""
    column = batch.column(plan.name)
    if plan.kind == ColumnKind.CATEGORICAL:
        index = category_index(column, plan.categories)
        return {category_key(plan.name, i): (index == i).astype(np.float64) for i in range(len(plan.categories))}
    values, valid = numeric_values(column)
    out: dict[str, np.ndarray] = {}
    if plan.stores_values:
        # Clamped before anything is encrypted: no row moves a sum by more than the bounds allow.
        x = clamped(values, valid, plan.bounds)
        out[numeric_key(plan.name)] = x / plan.scale
        if plan.has_nonzero_series:
            out[nonzero_key(plan.name)] = (valid & (x != 0)).astype(np.float64)
        for i, value in enumerate(plan.values):
            out[value_key(plan.name, i)] = (valid & (x == value)).astype(np.float64)
    if plan.has_nulls:
        out[presence_key(plan.name)] = valid.astype(np.float64)
    if plan.bucket_edges:
        # Buckets read the value itself, not its clamped stand-in: the cells partition the rows
        # whatever the bounds.
        index = cell_index(values, valid, plan.bucket_edges)
        codes = {BELOW: BELOW_CELL, ABOVE: ABOVE_CELL, NULL: NULL_CELL}
        for cell in plan.cells:
            code = cell if isinstance(cell, int) else codes[cell]
            out[cell_key(plan.name, cell)] = (index == code).astype(np.float64)
    return out


def _encrypt_pass(
    batches: Iterator[pa.RecordBatch],
    plans: list[ColumnPlan],
    writers: dict[str, _SeriesWriter],
    executor: Executor,
    slots: int,
    in_flight_limit: int,
    products: dict[tuple[str, str], list[float]],
    pack: bool,
) -> int:
    """Encrypts the series of ``writers``, and appends to ``products`` each piece's plaintext sum
    of every pair's product. Packed, a series' last ``rows % slots`` values are kept as its tail
    instead; else they are encrypted in a last chunk padded with zeros, and every total is encrypted."""
    block_rows = BLOCK_CHUNKS * slots
    pending: dict[str, list[np.ndarray]] = {key: [] for key in writers}
    pending_rows = 0
    in_flight: deque[tuple[_SeriesWriter, Future[list[bytes]]]] = deque()
    rows = 0

    def drain(limit: int) -> None:
        # FIFO: a series' blocks were submitted in row order, so they are written in row order.
        while len(in_flight) > limit:
            writer, future = in_flight.popleft()
            for chunk in future.result():
                writer.blob.append(chunk)

    def submit(count: int) -> None:
        nonlocal pending_rows
        for key, parts in pending.items():
            values = np.concatenate(parts) if len(parts) > 1 else parts[0]
            pending[key] = [values[count:]] if len(values) > count else []
            writer = writers[key]
            writer.partial_sums.append(float(np.sum(values[:count])))
            # Blocks are whole chunks but the last: only the last can leave a tail.
            full = count - count % slots if pack else count
            if full:
                in_flight.append((writer, executor.submit(encrypt_block, writer.level, values[:full], slots)))
            if full < count:
                writer.tail = values[full:count].copy()
            drain(in_flight_limit)
        pending_rows -= count

    for batch in batches:
        rows += batch.num_rows
        # Slice big batches so one batch never materialises all its series at once.
        for offset in range(0, batch.num_rows, block_rows):
            piece = batch.slice(offset, block_rows)
            piece_values: dict[str, np.ndarray] = {}
            for plan in plans:
                piece_values.update(_series_values(plan, piece))
            for key, values in piece_values.items():
                if key in pending:
                    pending[key].append(values)
            for (a, b), partial in products.items():
                # Not np.dot: BLAS threads spin against the encryption workers (~6 ms a piece, measured).
                partial.append(float(np.sum(piece_values[a] * piece_values[b])))
            pending_rows += piece.num_rows
            while pending_rows >= block_rows:
                submit(block_rows)
    if pending_rows:
        submit(pending_rows)
    drain(0)
    if pack:
        return rows  # the totals are packed by the caller
    totals = [
        (writer, executor.submit(encrypt_total, writer.level, math.fsum(writer.partial_sums)))
        for writer in writers.values()
    ]
    for writer, future in totals:
        writer.write_total(future.result())
    return rows
