"""Building, reading and deleting a dataset's encrypted column store.

Two passes over the data, each streaming the provider's batches with bounded memory:

1. profile: per numeric column the largest |x| (its scale: the smallest power of two bounding
   it), whether it has nulls, and a fixed-size uniform sample for quantile bucket edges;
2. encrypt: rows are cut into blocks of ``BLOCK_CHUNKS * slots``; every series' block goes to a
   worker process that encrypts it with the symmetric secret context, and the main process
   appends the ciphertexts to the series' blob in order. Meanwhile it sums each series'
   plaintext (normalised) values; at the end every series' total is encrypted too, as a
   one-value vector: what rotate-and-sum of the sum of its chunks would decrypt to (slot 0),
   with less noise (one fresh encryption instead of the chunks' noise and twelve rotations).
   It fits wherever the rotate-and-sum total fits, which ``max_rows`` guarantees.

Blob format (one blob per series, one per series' total): ``b"RLCT1\\n"``, then per chunk a
4-byte big-endian length and the CKKSVector's ``serialize()`` bytes (a total has one chunk).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import multiprocessing
import struct
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tenseal as ts

from dataspace.compute.he import keys as he_keys
from dataspace.compute.he.keys import KeyPair
from dataspace.compute.he.layout import (
    MAX_CATEGORIES,
    TOTAL_PREFIX,
    ColumnPlan,
    SeriesInfo,
    StoreLayout,
    blob_name,
    bucket_key,
    category_key,
    numeric_key,
    presence_key,
    total_blob_name,
)
from dataspace.compute.he.params import LEVELS
from dataspace.vault import blobs

logger = logging.getLogger(__name__)

MAGIC = b"RLCT1\n"
_LENGTH = struct.Struct(">I")
MAX_CHUNK_BYTES = 64 << 20  # a serialized N=8192 ciphertext is < 1 MB; anything larger is corruption

BLOCK_CHUNKS = 8  # chunks per worker task: large enough to amortise the pipe, small enough to stream
SAMPLE_SIZE = 65_536  # quantile sample per numeric column (bounded memory, ~0.5% quantile error)
MAX_OPEN_SERIES = 128  # series encrypted per pass over the data (open blobs, buffered blocks)
NUMERIC_TYPES = {"integer", "float", "boolean"}


@dataclass(frozen=True)
class StoreOptions:
    levels: dict[str, str] = field(default_factory=dict)  # column -> "sums"|"products"; default "products"
    buckets: dict[str, list[float]] = field(default_factory=dict)  # provider-chosen edges per numeric column
    quantile_buckets: int = 8  # numeric columns without provider edges get quantile edges
    workers: int = 2  # encryption processes


# --------------------------------------------------------------------------- pass 1: profile


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


def _numeric(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls as 0, validity mask) as float64."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        # CSV readers may hand numbers over as text; "" is a null, anything else must parse.
        array = pc.if_else(pc.equal(array, ""), pa.scalar(None, array.type), array)
    floats = pc.cast(array, pa.float64())
    valid = np.asarray(floats.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    values = np.asarray(floats.fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
    nan = np.isnan(values)
    if nan.any():  # a NaN is as absent as a null
        valid &= ~nan
        values[nan] = 0.0
    return values, valid


def _category_index(array: pa.Array | pa.ChunkedArray, categories: tuple[str, ...]) -> np.ndarray:
    """Index into ``categories`` per row, -1 for nulls and values outside them."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = pc.cast(array, pa.string())
    index = pc.index_in(array, value_set=pa.array(list(categories), type=array.type))
    return np.asarray(index.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _power_of_two_scale(max_abs: float) -> float:
    if max_abs <= 0 or not math.isfinite(max_abs):
        return 1.0
    return float(2.0 ** math.ceil(math.log2(max_abs)))


def _round_sig(value: float, digits: int, mode: str) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    exponent = math.floor(math.log10(abs(value))) - digits + 1
    step = 10.0**exponent
    scaled = value / step
    rounded = (math.floor(scaled) if mode == "down" else math.ceil(scaled) if mode == "up" else round(scaled)) * step
    return float(f"{rounded:.{digits}g}")


def quantile_edges(sample: np.ndarray, minimum: float, maximum: float, buckets: int) -> tuple[float, ...]:
    """Edges at the sample's quantiles, rounded to 3 significant digits (a consumer reads
    "20.5-31" more easily than "20.4817-31.0093", and rounding blurs the sample) and
    deduplicated; the outer edges are the exact range rounded outwards so every value lands
    in a bucket."""
    if not len(sample) or not math.isfinite(minimum) or buckets < 1:
        return ()
    inner = np.quantile(sample, np.linspace(0, 1, buckets + 1)[1:-1]) if buckets > 1 else np.empty(0)
    edges = [_round_sig(minimum, 3, "down"), *(_round_sig(float(q), 3, "nearest") for q in inner)]
    edges.append(_round_sig(maximum, 3, "up"))
    unique = sorted(set(edges))
    inside = [e for e in unique if unique[0] <= e <= unique[-1]]
    if len(inside) < 2:  # a constant column: one bucket holding the value
        return (minimum, maximum) if minimum < maximum else (minimum, minimum + 1.0)
    return tuple(inside)


def bucket_index(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Bucket per value, -1 outside the edges; bucket i = [e[i], e[i+1]), the last one closed."""
    array = np.asarray(edges)
    index = np.searchsorted(array, values, side="right") - 1
    index[values == array[-1]] = len(array) - 2
    index[(index < 0) | (index >= len(array) - 1)] = -1
    return index


def plan_columns(
    schema: list[dict[str, Any]], options: StoreOptions, keys: dict[str, KeyPair]
) -> list[tuple[dict[str, Any], str, str]]:
    """(schema entry, kind, level) of every column the store will encrypt."""
    planned = []
    for column in schema:
        name, kind = column["name"], column.get("type")
        level = options.levels.get(name, "products")
        if level not in LEVELS:
            raise ValueError(f"column {name!r}: unknown level {level!r}")
        if kind in NUMERIC_TYPES:
            planned.append((column, "numeric", level))
        elif kind == "categorical":
            categories = column.get("categories") or []
            cardinality = column.get("cardinality", len(categories))
            if not categories or cardinality > MAX_CATEGORIES or len(categories) > MAX_CATEGORIES:
                continue  # too many indicator series to be worth encrypting
            planned.append((column, "categorical", level))
        # dates and free text are not encrypted: no operation reads them
    for column, _, level in planned:
        if level not in keys:
            raise ValueError(f"column {column['name']!r} needs {level!r} keys, which were not generated")
    unknown = (set(options.levels) | set(options.buckets)) - {c["name"] for c, _, _ in planned}
    if unknown:
        raise ValueError(f"options name columns that are not encrypted: {', '.join(sorted(unknown))}")
    return planned


def _profile(
    batches: Iterator[pa.RecordBatch], planned: list[tuple[dict[str, Any], str, str]], options: StoreOptions
) -> tuple[list[ColumnPlan], int]:
    rng = np.random.default_rng(0x5EED)
    numeric = {c["name"]: _NumericProfile() for c, kind, _ in planned if kind == "numeric"}
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        for name, profile in numeric.items():
            values, valid = _numeric(batch.column(name))
            profile.add(values, valid, rng)
    plans = []
    for column, kind, level in planned:
        name = column["name"]
        if kind == "categorical":
            plans.append(
                ColumnPlan(name=name, kind=kind, level=level, categories=tuple(map(str, column["categories"])))
            )
            continue
        profile = numeric[name]
        if name in options.buckets:
            edges = tuple(float(e) for e in options.buckets[name])
            if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError(f"bucket edges of {name!r} must be at least two, strictly increasing")
        elif column.get("type") == "boolean":
            edges = ()  # a 0/1 column's histogram is its sum
        else:
            edges = quantile_edges(profile.sample_values, profile.minimum, profile.maximum, options.quantile_buckets)
        open_ends = bool(edges) and name not in options.buckets
        plans.append(
            ColumnPlan(
                name=name,
                kind=kind,
                level=level,
                scale=_power_of_two_scale(profile.max_abs),
                has_nulls=profile.nulls > 0 or int(column.get("nulls") or 0) > 0,
                bucket_edges=edges,
                open_ends=open_ends,
            )
        )
    return plans, rows


# --------------------------------------------------------------------------- pass 2: encrypt

_worker_contexts: dict[str, Any] = {}


def _worker_init(secret_contexts: dict[str, bytes]) -> None:
    _worker_contexts.clear()
    for level, data in secret_contexts.items():
        _worker_contexts[level] = he_keys.load_secret_context(data)


def _worker_ready() -> bool:
    return bool(_worker_contexts)


def _encrypt_block(level: str, values: np.ndarray, slots: int) -> list[bytes]:
    # TenSEAL's own CKKSVector constructor goes array -> np.array -> flatten -> list ->
    # PlainTensor -> list again (~0.25 ms of a ~3 ms chunk, measured); its C++ constructor takes
    # the list directly and yields the same ciphertext.
    context = _worker_contexts[level].data
    out = []
    for start in range(0, len(values), slots):
        chunk = values[start : start + slots]
        if len(chunk) < slots:  # every vector the same size, so any two chunks can be added
            chunk = np.concatenate([chunk, np.zeros(slots - len(chunk))])
        out.append(ts._ts_cpp.CKKSVector(context, chunk.tolist()).serialize())
    return out


class _InlineExecutor(Executor):
    """Runs each task on submit, in this process: the fallback where no child may be started."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class _BilliardExecutor(Executor):
    """Celery's billiard pool behind the Executor interface. A Celery prefork child is a daemonic
    process, and the stdlib refuses to start children from one; billiard does not."""

    def __init__(self, workers: int, secret_contexts: dict[str, bytes]) -> None:
        import billiard  # Celery's own dependency, needed only here

        self._pool = billiard.get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(secret_contexts,))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._pool.apply_async(fn, args, kwargs, callback=future.set_result, error_callback=future.set_exception)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            self._pool.terminate()
        else:
            self._pool.close()
        if wait:
            self._pool.join()


def _start_pool(workers: int, secret_contexts: dict[str, bytes]) -> Executor:
    if multiprocessing.current_process().daemon:
        return _BilliardExecutor(workers, secret_contexts)
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(secret_contexts,),
    )


def _inline(secret_contexts: dict[str, bytes]) -> Executor:
    _worker_init(secret_contexts)
    return _InlineExecutor()


def _fallback(exc: BaseException, secret_contexts: dict[str, bytes]) -> Executor:
    logger.warning("encrypting in one process: worker processes could not start (%s: %s)", type(exc).__name__, exc)
    return _inline(secret_contexts)


def _open_executor(workers: int, secret_contexts: dict[str, bytes]) -> Callable[[], Executor]:
    """Starts ``workers`` encryption processes and returns a call that waits until they are ready
    (or, if they cannot start, falls back to this process alone, slower but correct). Starting
    comes first so the workers' imports overlap the profiling pass.

    Children are spawned, not forked: a fork of a Celery worker would inherit its broker
    connections and threads."""
    if workers <= 1:
        return lambda: _inline(secret_contexts)
    try:
        pool = _start_pool(workers, secret_contexts)
        probes = [pool.submit(_worker_ready) for _ in range(workers)]
    except Exception as exc:  # any refusal means the same fallback
        failure = exc
        return lambda: _fallback(failure, secret_contexts)

    def ready() -> Executor:
        try:
            # Every worker has started and loaded its contexts, so a refusal surfaces here.
            if not all(probe.result(timeout=300) for probe in probes):
                raise RuntimeError("a worker started without its contexts")
        except Exception as exc:
            pool.shutdown(wait=False, cancel_futures=True)
            return _fallback(exc, secret_contexts)
        return pool

    return ready


def _encrypt_total(level: str, total: float) -> bytes:
    data: bytes = ts.ckks_vector(_worker_contexts[level], [total]).serialize()
    return data


def _write_blob(name: str, chunks: list[bytes]) -> str:
    """Writes a framed blob of ``chunks``; returns its sha256."""
    hasher = hashlib.sha256()
    with blobs.open_for_write(name) as sink:
        for data in (MAGIC, *(part for chunk in chunks for part in (_LENGTH.pack(len(chunk)), chunk))):
            sink.write(data)
            hasher.update(data)
    return hasher.hexdigest()


class _SeriesWriter:
    def __init__(self, key: str, level: str, name: str, total_name: str) -> None:
        self.key, self.level, self.name, self.total_name = key, level, name, total_name
        self.sink: IO[bytes] = blobs.open_for_write(name)
        self.hasher = hashlib.sha256()
        self.chunks = 0
        self.partial_sums: list[float] = []  # plaintext (normalised) sum of each submitted block
        self.total_sha256: str | None = None
        self._write(MAGIC)

    def _write(self, data: bytes) -> None:
        self.sink.write(data)
        self.hasher.update(data)

    def append(self, chunk: bytes) -> None:
        self._write(_LENGTH.pack(len(chunk)))
        self._write(chunk)
        self.chunks += 1

    def write_total(self, chunk: bytes) -> None:
        self.total_sha256 = _write_blob(self.total_name, [chunk])

    def close(self) -> SeriesInfo:
        self.sink.close()
        return SeriesInfo(
            key=self.key,
            level=self.level,
            blob_name=self.name,
            chunks=self.chunks,
            sha256=self.hasher.hexdigest(),
            total_blob=self.total_name if self.total_sha256 else None,
            total_sha256=self.total_sha256,
        )


def _series_values(plan: ColumnPlan, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    """Every series of one column for one slice of rows."""
    column = batch.column(plan.name)
    if plan.kind == "categorical":
        index = _category_index(column, plan.categories)
        return {category_key(plan.name, i): (index == i).astype(np.float64) for i in range(len(plan.categories))}
    values, valid = _numeric(column)
    out = {numeric_key(plan.name): values / plan.scale}
    if plan.has_nulls:
        out[presence_key(plan.name)] = valid.astype(np.float64)
    if plan.bucket_edges:
        index = np.where(valid, bucket_index(values, plan.bucket_edges), -1)
        for i in range(len(plan.bucket_edges) - 1):
            out[bucket_key(plan.name, i)] = (index == i).astype(np.float64)
    return out


def _encrypt_pass(
    batches: Iterator[pa.RecordBatch],
    plans: list[ColumnPlan],
    writers: dict[str, _SeriesWriter],
    executor: Executor,
    slots: int,
    in_flight_limit: int,
) -> int:
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
                writer.append(chunk)

    def submit(count: int) -> None:
        nonlocal pending_rows
        for key, parts in pending.items():
            values = np.concatenate(parts) if len(parts) > 1 else parts[0]
            pending[key] = [values[count:]] if len(values) > count else []
            writer = writers[key]
            writer.partial_sums.append(float(np.sum(values[:count])))
            in_flight.append((writer, executor.submit(_encrypt_block, writer.level, values[:count], slots)))
            drain(in_flight_limit)
        pending_rows -= count

    for batch in batches:
        rows += batch.num_rows
        # Slice big batches so one batch never materialises all its series at once.
        for offset in range(0, batch.num_rows, block_rows):
            piece = batch.slice(offset, block_rows)
            for plan in plans:
                for key, values in _series_values(plan, piece).items():
                    if key in pending:
                        pending[key].append(values)
            pending_rows += piece.num_rows
            while pending_rows >= block_rows:
                submit(block_rows)
    if pending_rows:
        submit(pending_rows)
    drain(0)
    totals = [
        (writer, executor.submit(_encrypt_total, writer.level, math.fsum(writer.partial_sums)))
        for writer in writers.values()
    ]
    for writer, future in totals:
        writer.write_total(future.result())
    return rows


def build_store(
    *,
    batches: Callable[[], Iterator[pa.RecordBatch]],
    schema: list[dict[str, Any]],
    rows: int,
    options: StoreOptions,
    keys: dict[str, KeyPair],
    blob_prefix: str,
) -> StoreLayout:
    """Encrypts every numeric and categorical column of the dataset into series blobs under
    ``blob_prefix``. On any failure the blobs written so far are deleted before it raises."""
    planned = plan_columns(schema, options, keys)
    for level in {level for _, _, level in planned}:
        if rows > LEVELS[level].max_rows:
            raise ValueError(f"{rows} rows exceed the {level!r} level's {LEVELS[level].max_rows}-row capacity")
    slots = {LEVELS[level].slots for level in keys}
    if len(slots) != 1:
        raise ValueError("all levels must share one slot count")
    slot_count = slots.pop()
    levels_used = {level for _, _, level in planned}
    secret = {level: pair.secret_context for level, pair in keys.items() if level in levels_used}
    executor_ready = _open_executor(options.workers if planned else 1, secret)
    try:
        plans, profiled_rows = _profile(batches(), planned, options)
        if profiled_rows != rows:
            raise ValueError(f"the data has {profiled_rows} rows, the catalogue says {rows}")
    except BaseException:
        executor_ready().shutdown(wait=False, cancel_futures=True)
        raise
    executor = executor_ready()

    all_keys = [(plan, key) for plan in plans for key in plan.series_keys]
    series: dict[str, SeriesInfo] = {}
    written: list[str] = []
    try:
        for start in range(0, len(all_keys), MAX_OPEN_SERIES):
            group = all_keys[start : start + MAX_OPEN_SERIES]
            writers: dict[str, _SeriesWriter] = {}
            try:
                for plan, key in group:
                    writers[key] = _SeriesWriter(
                        key, plan.level, blob_name(blob_prefix, key), total_blob_name(blob_prefix, key)
                    )
                    written += [writers[key].name, writers[key].total_name]
                group_plans = [p for p in plans if any(p is q for q, _ in group)]
                encrypted_rows = _encrypt_pass(
                    batches(), group_plans, writers, executor, slot_count, in_flight_limit=4 * max(1, options.workers)
                )
            finally:
                infos = [writer.close() for writer in writers.values()]
            if encrypted_rows != rows:
                raise ValueError(f"the data changed between passes: {encrypted_rows} rows, expected {rows}")
            series.update({info.key: info for info in infos})
    except BaseException:
        for name in written:
            if blobs.exists(name):
                blobs.delete(name)
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return StoreLayout(rows=rows, slots=slot_count, columns=tuple(plans), series=series)


# --------------------------------------------------------------------------- reading


def read_series(layout: StoreLayout, key: str) -> Iterator[bytes]:
    """Each chunk's serialized ciphertext, in row order, read lazily. Checks the framing only
    (magic, lengths, chunk count); the blob's sha256 is the caller's to check if it wants.
    ``total_key(key)`` reads the series' materialised total instead: one ciphertext (KeyError if
    the layout has none)."""
    if key.startswith(TOTAL_PREFIX):
        info = layout.series[key.removeprefix(TOTAL_PREFIX)]
        if info.total_blob is None:
            raise KeyError(f"series {info.key!r} has no materialised total")
        name, chunks = info.total_blob, 1
    else:
        info = layout.series[key]
        name, chunks = info.blob_name, info.chunks
    with blobs.open_for_read(name) as source:
        if source.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"series {key!r}: not an RLCT1 blob")
        for index in range(chunks):
            header = source.read(_LENGTH.size)
            if len(header) != _LENGTH.size:
                raise ValueError(f"series {key!r}: truncated at chunk {index} of {chunks}")
            (length,) = _LENGTH.unpack(header)
            if length > MAX_CHUNK_BYTES:
                raise ValueError(f"series {key!r}: chunk {index} claims {length} bytes")
            chunk = source.read(length)
            if len(chunk) != length:
                raise ValueError(f"series {key!r}: truncated in chunk {index} of {chunks}")
            yield chunk
        if source.read(1):
            raise ValueError(f"series {key!r}: bytes after the last of {chunks} chunks")


def delete_store(layout: StoreLayout) -> None:
    for info in layout.series.values():
        for name in (info.blob_name, info.total_blob):
            if name is not None and blobs.exists(name):
                blobs.delete(name)
