"""Validating a tabular file and inferring its schema, in bounded memory.

Input is a seekable binary stream of plaintext (in practice the vault's decrypting view of a
sealed upload); output is a ``TableProfile``. Every failure is an ``IngestError`` whose message
names the problem but never contains a value from the file: pyarrow's own messages quote cell
values, so they are never passed on, not even to a log.
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from dataspace.errors import DomainError, ErrorCode

CSV_BLOCK_BYTES = 1 << 20  # pyarrow's unit of work per thread within the first segment
# The first segment (twice this: the types are inferred from its 8 MiB) is parsed on all cores;
# the others one per core, so they are kept small enough that the cores finish nearly together.
CSV_SEGMENT_BYTES = 4 << 20
PARQUET_BATCH_ROWS = 64_000
MAX_COLUMNS = 1_000
CATEGORICAL_MAX_VALUES = 64
HEAD_BYTES = 1 << 20
_PROBE_ROWS = 4_096
COLUMN_NAME = re.compile(r"^[^\W\d][\w .\-]{0,63}$")
DELIMITERS = {",", ";", "\t", "|"}

ProgressCallback = Callable[[float], None]


class IngestError(DomainError):
    """The uploaded file is not an acceptable table."""


class ColumnType:
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    CATEGORICAL = "categorical"
    DATE = "date"
    TEXT = "text"


# ISSUE-15: the types a provider may name when correcting an inferred one at upload, and the
# inferred types each can be read from without changing a value: a number is never read from
# text, text never as a date; integer codes (postcodes, ward numbers) may become categories.
SUPPORTED_COLUMN_TYPES = (
    ColumnType.INTEGER,
    ColumnType.FLOAT,
    ColumnType.BOOLEAN,
    ColumnType.CATEGORICAL,
    ColumnType.DATE,
    ColumnType.TEXT,
)
_CORRECTABLE_FROM: dict[str, set[str]] = {
    ColumnType.TEXT: set(SUPPORTED_COLUMN_TYPES),
    ColumnType.CATEGORICAL: {ColumnType.TEXT, ColumnType.CATEGORICAL, ColumnType.INTEGER},
    ColumnType.FLOAT: {ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN},
    ColumnType.INTEGER: {ColumnType.INTEGER, ColumnType.BOOLEAN},
    ColumnType.BOOLEAN: {ColumnType.BOOLEAN},
    ColumnType.DATE: {ColumnType.DATE},
}
# Read as text in a CSV, so a category keeps the file's spelling ("007", not 7).
_READ_AS_TEXT = {ColumnType.CATEGORICAL, ColumnType.TEXT}


def check_column_types(column_types: dict[str, str], columns: list[str]) -> None:
    """ISSUE-15: a provider's type corrections name columns of the file and supported types."""
    for column, wanted in column_types.items():
        if wanted not in SUPPORTED_COLUMN_TYPES:
            raise DomainError(
                f"Column {column!r} cannot be given the type {wanted!r}; "
                f"supported types: {', '.join(SUPPORTED_COLUMN_TYPES)}.",
                code=ErrorCode.UNSUPPORTED_COLUMN_TYPE,
                details={"column": column, "type": wanted, "supported": list(SUPPORTED_COLUMN_TYPES)},
            )
        if column not in columns:
            raise DomainError(
                f"A type is given for {column!r}, which is not a column of the file.",
                code=ErrorCode.COLUMN_NOT_FOUND,
                details={"column": column},
            )


@dataclass
class ColumnProfile:
    name: str
    type: str
    nulls: int
    cardinality: int | None = None
    categories: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nulls": self.nulls}
        if self.type == ColumnType.CATEGORICAL:
            out["cardinality"] = self.cardinality
            out["categories"] = self.categories
        return out


@dataclass
class TableProfile:
    rows: int
    columns: list[ColumnProfile]


@dataclass(frozen=True)
class _ColumnCount:
    """What one piece of a column adds to its profile. ``values``: its distinct values as text,
    empty for a type that has no categories, None past the categorical cap (or not asked for)."""

    nulls: int
    values: frozenset[str] | None


def _count_column(array: pa.Array | pa.ChunkedArray, *, with_values: bool) -> _ColumnCount:
    """A pure function of the array, so worker threads can count segments in any order; the
    merge (``_ColumnAccumulator.merge``) is a union, which the order does not change."""
    # Integers too (ISSUE-15): a provider may declare integer codes categorical.
    if not with_values or not (_is_stringlike(array.type) or pa.types.is_integer(array.type)):
        return _ColumnCount(array.null_count, frozenset() if with_values else None)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    # A segment holds many rows: an identifier column shows it is no category within its first
    # few thousand, without hashing or copying the rest into Python.
    if _distinct_count(pc.unique(array.slice(0, _PROBE_ROWS))) > CATEGORICAL_MAX_VALUES:
        return _ColumnCount(array.null_count, None)
    values = pc.unique(array)
    if _distinct_count(values) > CATEGORICAL_MAX_VALUES:
        return _ColumnCount(array.null_count, None)
    if pa.types.is_integer(values.type):
        values = pc.cast(values, pa.string())  # the spelling reading.py gives them
    return _ColumnCount(array.null_count, frozenset(v for v in values.to_pylist() if v is not None))


@dataclass
class _ColumnAccumulator:
    name: str
    nulls: int = 0
    distinct: set[str] | None = field(default_factory=set)  # None once past the categorical cap

    def add(self, array: pa.Array | pa.ChunkedArray) -> None:
        self.merge(_count_column(array, with_values=self.distinct is not None))

    def merge(self, count: _ColumnCount) -> None:
        self.nulls += count.nulls
        if self.distinct is None:
            return
        # Values are counted while the column is still a candidate, and candidates only ever drop
        # out, so a count without values here means the piece went past the cap.
        if count.values is None:
            self.distinct = None
            return
        self.distinct.update(count.values)
        if len(self.distinct) > CATEGORICAL_MAX_VALUES:
            self.distinct = None

    def finish(self, arrow_type: pa.DataType, rows: int, wanted: str | None = None) -> ColumnProfile:
        kind = _column_type(arrow_type)
        # Few distinct values relative to the rows: a category, not free text.
        is_category = self.distinct is not None and len(self.distinct) > 0 and rows >= 2 * len(self.distinct)
        if kind == ColumnType.TEXT and is_category and _is_stringlike(arrow_type):
            kind = ColumnType.CATEGORICAL
        if wanted is not None and wanted != kind:
            kind = self._corrected(kind, wanted)  # ISSUE-15
        if kind == ColumnType.CATEGORICAL:
            values = sorted(self.distinct or ())
            return ColumnProfile(self.name, ColumnType.CATEGORICAL, self.nulls, len(values), values)
        return ColumnProfile(self.name, kind, self.nulls)

    def _corrected(self, inferred: str, wanted: str) -> str:
        """ISSUE-15: the provider's type, if the whole column can be read as it."""
        if inferred not in _CORRECTABLE_FROM.get(wanted, set()):
            raise IngestError(
                f"Column {self.name!r} holds {inferred} values, which cannot be read as {wanted}.",
                code=ErrorCode.UNSUPPORTED_COLUMN_TYPE,
                details={"column": self.name, "inferred": inferred, "type": wanted},
            )
        if wanted == ColumnType.CATEGORICAL and not self.distinct:
            raise IngestError(
                f"Column {self.name!r} has more than {CATEGORICAL_MAX_VALUES} distinct values (or none); "
                "it cannot be categorical.",
                code=ErrorCode.UNSUPPORTED_COLUMN_TYPE,
                details={"column": self.name, "type": wanted},
            )
        return wanted


def _distinct_count(unique: pa.Array) -> int:
    return int(len(unique) - unique.null_count)


def _is_stringlike(arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        return _is_stringlike(arrow_type.value_type)
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))


def _column_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_integer(arrow_type):
        return ColumnType.INTEGER
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return ColumnType.FLOAT
    if pa.types.is_boolean(arrow_type):
        return ColumnType.BOOLEAN
    if pa.types.is_date(arrow_type) or pa.types.is_timestamp(arrow_type):
        return ColumnType.DATE
    if _is_stringlike(arrow_type) or pa.types.is_null(arrow_type):
        return ColumnType.TEXT
    raise IngestError(
        f"A column has the unsupported type {arrow_type}; use numbers, booleans, dates or text.",
        code=ErrorCode.UNSUPPORTED_COLUMN_TYPE,
    )


def check_column_names(names: list[str]) -> None:
    if len(names) > MAX_COLUMNS:
        raise IngestError(
            f"The file has {len(names)} columns; at most {MAX_COLUMNS} are allowed.", code=ErrorCode.TOO_MANY_COLUMNS
        )
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if not name.strip():
            raise IngestError(
                f"Column {position} has an empty name.", code=ErrorCode.EMPTY_COLUMN_NAME, details={"column": position}
            )
        if name in seen:
            raise IngestError(
                f"The column name {name!r} appears more than once.",
                code=ErrorCode.DUPLICATE_COLUMN,
                details={"column": position},
            )
        if not COLUMN_NAME.match(name):
            raise IngestError(
                f"Column {position} has a name that is not allowed ({name[:64]!r}): use letters, digits, "
                "spaces, '_', '-' or '.', start with a letter, at most 64 characters.",
                code=ErrorCode.INVALID_COLUMN_NAME,
                details={"column": position},
            )
        seen.add(name)


# CSV


@dataclass
class _RaggedRows:
    count: int = 0
    first_line: int | None = None
    first_fields: int = 0
    expected: int = 0

    def __call__(self, row: Any) -> str:
        if self.count == 0:
            self.first_line, self.first_fields, self.expected = row.number, row.actual_columns, row.expected_columns
        self.count += 1
        return "skip"

    def raise_if_any(self) -> None:
        if self.count:
            where = f" (first at line {self.first_line})" if self.first_line else ""
            raise IngestError(
                f"{self.count} row(s) have the wrong number of fields{where}: "
                f"found {self.first_fields}, expected {self.expected}.",
                code=ErrorCode.RAGGED_ROWS,
                details={"rows": self.count, "first_line": self.first_line},
            )


_CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to (\w+)")
_WIDER = {
    "int64": pa.float64(),
    "double": pa.string(),
    "bool": pa.string(),
    "date32": pa.string(),
    "timestamp": pa.string(),
}


def _check_head(head: bytes, delimiter: str) -> list[str]:
    if not head.strip():
        raise IngestError("The file is empty.", code=ErrorCode.FILE_EMPTY)
    if b"\x00" in head:
        raise IngestError("The file holds binary data, not CSV text.", code=ErrorCode.BINARY_CONTENT)
    first_line = head.split(b"\n", 1)[0]
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise IngestError("The header is not valid UTF-8 text.", code=ErrorCode.INVALID_ENCODING) from None
    names = next(csv.reader([text.rstrip("\r")], delimiter=delimiter), [])
    check_column_names(names)
    return names


def profile_csv(
    stream: BinaryIO,
    *,
    delimiter: str = ",",
    size: int,
    on_progress: ProgressCallback | None = None,
    column_types: dict[str, str] | None = None,
) -> TableProfile:
    if delimiter not in DELIMITERS:
        raise IngestError("The delimiter must be one of , ; | or a tab.", code=ErrorCode.MALFORMED_CSV)
    stream.seek(0)
    header = _check_head(stream.read(64 * 1024), delimiter)
    wanted = column_types or {}
    overrides: dict[str, pa.DataType] = {name: pa.string() for name, t in wanted.items() if t in _READ_AS_TEXT}
    # A column widened to text after earlier segments were counted as another type starts the
    # read over, so its categories keep the file's spelling. At most one restart per column.
    for _attempt in range(MAX_COLUMNS + 1):
        stream.seek(0)
        try:
            return _profile_csv_segments(stream, delimiter, header, overrides, size, on_progress, wanted)
        except _ReadAgain:
            continue
    raise IngestError("The column types could not be settled.", code=ErrorCode.MALFORMED_CSV)


class _ReadAgain(Exception):
    """A column was widened to text after earlier segments had counted it as another type."""


def _column_names(stream: BinaryIO, delimiter: str) -> list[str]:
    stream.seek(0)
    return _check_head(stream.read(64 * 1024), delimiter)


def _csv_error(exc: pa.ArrowInvalid) -> IngestError:
    text = str(exc)
    if "Empty CSV file" in text:
        return IngestError("The file is empty.", code=ErrorCode.FILE_EMPTY)
    if "UTF8" in text or "UTF-8" in text:
        return IngestError("The file is not valid UTF-8 text.", code=ErrorCode.INVALID_ENCODING)
    if "Expected" in text and "columns" in text:
        return IngestError("Rows have the wrong number of fields.", code=ErrorCode.RAGGED_ROWS)
    return IngestError("The file could not be parsed as CSV.", code=ErrorCode.MALFORMED_CSV)


@dataclass(frozen=True)
class _Segment:
    view: memoryview
    quoted: bool  # holds a quote character: its values may hold newlines
    buffer: bytearray  # what ``view`` looks into, given back once the segment is counted

    @property
    def ascii(self) -> bool:
        """ASCII is valid UTF-8, so such a segment's text needs no UTF-8 check (8% of a parse)."""
        return not self.view or int(np.frombuffer(self.view, dtype=np.uint8).max()) < 0x80


class _Buffers:
    """Segment buffers used again once their segment is counted, by this ingest and the next ones
    in the process. A new one is zero-filled and faulted in page by page while its thread holds the
    GIL: reading a segment into a new buffer took 3.1 ms instead of 0.9 ms, and the parsing
    threads waited for the GIL meanwhile. At most ``keep`` buffers wait here between uses."""

    _SLACK = 64 * 1024  # room for the carried start of a row, so a buffer fits the next segment too

    def __init__(self, *, keep: int, largest: int) -> None:
        self._free: list[bytearray] = []
        self._zeroed: set[int] = set()  # ids of the waiting buffers no plaintext touched since a wipe
        self._keep = keep
        self._largest = largest  # a buffer grown for an unusually long row is not kept
        self._lock = threading.Lock()  # a web process checks uploads' heads on several threads

    def take(self, size: int) -> bytearray:
        with self._lock:
            fitting = [(len(buffer), position) for position, buffer in enumerate(self._free) if len(buffer) >= size]
            if fitting:
                buffer = self._free.pop(min(fitting)[1])
                self._zeroed.discard(id(buffer))
                return buffer
        return bytearray(size + self._SLACK)

    def give(self, buffer: bytearray) -> None:
        if len(buffer) > self._largest:
            return
        with self._lock:
            self._free.append(buffer)
            if len(self._free) > self._keep:
                dropped = self._free.pop(min((len(b), position) for position, b in enumerate(self._free))[1])
                self._zeroed.discard(id(dropped))

    def wipe(self) -> None:
        """Zeroes the buffers given back since the last wipe (0.6 ms for 20 MiB), so a file's
        plaintext does not outlive its ingest in the process's memory. An upload's head check
        uses one buffer: it does not zero the others again."""
        with self._lock:
            for buffer in self._free:
                if id(buffer) not in self._zeroed:
                    np.frombuffer(buffer, dtype=np.uint8)[:] = 0
                    self._zeroed.add(id(buffer))


_QUOTE = b'"'


def _line_end(buffer: bytearray, end: int) -> tuple[int, bool]:
    """Where a segment of ``buffer[:end]`` may end: just after its last newline outside quotes (0
    if none), and whether it holds a quote at all. The buffer starts where a row starts, so a
    newline is outside quotes when an even number of quote characters precede it; a doubled
    quote inside a value counts twice, which keeps the parity right."""
    cut = buffer.rfind(b"\n", 0, end) + 1
    if buffer.find(_QUOTE, 0, end) < 0:
        return cut, False
    quotes_before = buffer.count(_QUOTE, 0, cut)
    while cut and quotes_before % 2:
        previous = buffer.rfind(b"\n", 0, cut - 1) + 1
        quotes_before -= buffer.count(_QUOTE, previous, cut)
        cut = previous
    return cut, True


def _segments(
    stream: BinaryIO, segment_bytes: int, *, first_bytes: int | None = None, buffers: _Buffers | None = None
) -> Generator[_Segment, None, None]:
    """The stream in pieces of about ``segment_bytes`` (the first ``first_bytes``), each ending
    just after a row's newline (the last one where the stream ends); a quoted value's newlines
    are no cut. Each piece's buffer comes from ``buffers``, where its consumer gives it back."""
    buffers = buffers or _BUFFERS
    carry = b""
    wanted = first_bytes or segment_bytes
    while True:
        total = len(carry) + wanted
        buffer = buffers.take(total)
        wanted = segment_bytes
        buffer[: len(carry)] = carry
        view = memoryview(buffer)
        filled = len(carry)
        while filled < total:
            got = stream.readinto(view[filled:total])  # type: ignore[attr-defined]
            if not got:
                break
            filled += got
        if filled < total:  # the end of the stream
            if filled:
                yield _Segment(view[:filled], buffer.find(_QUOTE, 0, filled) >= 0, buffer)
            return
        cut, quoted = _line_end(buffer, filled)
        if cut == 0:  # a row longer than a segment: read on until it ends
            carry = bytes(view[:filled])
            del view
            buffers.give(buffer)
            continue
        carry = bytes(view[cut:filled])
        yield _Segment(view[:cut], quoted, buffer)


def _read_segment(
    segment: _Segment,
    names: list[str] | None,
    types: dict[str, pa.DataType],
    parse_options: pa_csv.ParseOptions,
    *,
    use_threads: bool,
) -> pa.Table:
    # The first segment carries the header; the others get its names, and every column's type
    # as settled so far, so all segments yield one schema.
    # On one thread the segment is one block: 8% less CPU than 1 MiB blocks, and one chunk per
    # column to count. Threads share out blocks, so there they stay small.
    block_size = CSV_BLOCK_BYTES if use_threads else max(CSV_BLOCK_BYTES, len(segment.view) + 1)
    read_options = pa_csv.ReadOptions(block_size=block_size, use_threads=use_threads, column_names=names)
    if segment.quoted:
        # pyarrow's own blocks must not end inside a quoted value either; this costs a
        # quote-aware scan, so only segments with quotes pay it.
        parse_options = _with_newlines_in_values(parse_options)
    return pa_csv.read_csv(
        pa.BufferReader(pa.py_buffer(segment.view)),
        read_options=read_options,
        parse_options=parse_options,
        convert_options=pa_csv.ConvertOptions(
            column_types=types, strings_can_be_null=True, check_utf8=not segment.ascii
        ),
    )


@dataclass
class _RaggedSeen:
    """Threaded parsing reports ragged rows without their line; whether there were any is enough
    here, the serial pass on the error path (``_ragged_error``) finds the count and first line."""

    seen: bool = False

    def __call__(self, row: Any) -> str:
        self.seen = True
        return "skip"


@dataclass(frozen=True)
class _SegmentCount:
    rows: int
    columns: list[_ColumnCount]


def _read_and_count(
    segment: _Segment,
    names: list[str],
    types: dict[str, pa.DataType],
    parse_options: pa_csv.ParseOptions,
    with_values: list[bool],
) -> _SegmentCount:
    """One segment on one core (a worker thread; pyarrow holds no GIL while it parses and counts):
    its table lives only here, so what a segment leaves behind is a few counts."""
    table = _read_segment(segment, names, types, parse_options, use_threads=False)
    columns = [_count_column(c, with_values=w) for c, w in zip(table.columns, with_values, strict=True)]
    return _SegmentCount(table.num_rows, columns)


# Segments after the first are parsed whole, one per core, each on a single thread: no barrier
# at a segment's end for its last block, and no handing blocks between threads. One more is
# read (decrypted, authenticated) while those two parse.
_PARSERS = 2
_IN_FLIGHT = _PARSERS + 1
# Enough for an ingest's segments in flight, the one being read and the first (twice the size).
_BUFFERS = _Buffers(keep=_IN_FLIGHT + 2, largest=2 * CSV_SEGMENT_BYTES + _Buffers._SLACK)


def _with_newlines_in_values(options: pa_csv.ParseOptions) -> pa_csv.ParseOptions:
    return pa_csv.ParseOptions(
        delimiter=options.delimiter,
        quote_char=options.quote_char,
        double_quote=options.double_quote,
        escape_char=options.escape_char,
        newlines_in_values=True,
        ignore_empty_lines=options.ignore_empty_lines,
        invalid_row_handler=options.invalid_row_handler,
    )


_Types = dict[str, pa.DataType]


@dataclass
class _SegmentReader:
    """The CSV's segments and what is known so far: column names and types, and the counts."""

    header: list[str]
    overrides: dict[str, pa.DataType]
    parse_options: pa_csv.ParseOptions
    names: list[str] | None = None
    types: dict[str, pa.DataType] = field(default_factory=dict)
    accumulators: list[_ColumnAccumulator] = field(default_factory=list)
    rows: int = 0

    def read_first(self, segment: _Segment, pool: ThreadPoolExecutor) -> None:
        """Infers the types from the first segment, parsed and counted on all cores; later values
        that do not fit widen their column (integer -> float -> text)."""
        self.types = dict(self.overrides)
        # One block is parsed on one thread whatever the setting; threads only cost it time (a
        # small upload, the head checked at upload).
        on_all_cores = len(segment.view) > CSV_BLOCK_BYTES
        table = self._read_widening(segment, use_threads=on_all_cores)
        self.names = table.schema.names
        self.types = {f.name: f.type for f in table.schema}
        self.accumulators = [_ColumnAccumulator(name) for name in self.names]
        count = partial(_count_column, with_values=True)
        columns = pool.map(count, table.columns) if on_all_cores else map(count, table.columns)
        self._merge(_SegmentCount(table.num_rows, list(columns)))

    def submit(
        self, pool: ThreadPoolExecutor, segment: _Segment
    ) -> tuple[dict[str, pa.DataType], Future[_SegmentCount]]:
        assert self.names is not None
        types = dict(self.types)
        with_values = [acc.distinct is not None for acc in self.accumulators]
        return types, pool.submit(_read_and_count, segment, self.names, types, self.parse_options, with_values)

    def settle(self, segment: _Segment, types: dict[str, pa.DataType], counted: Future[_SegmentCount]) -> None:
        """Takes a segment's counts in file order. A segment parsed before an earlier one widened
        a column is parsed again with the wider type, so every segment is read with one schema."""
        try:
            count = counted.result()
        except pa.ArrowInvalid as exc:
            if types == self.types:
                _widen(exc, self.names or self.header, self.types, self.overrides, self.accumulators)
            count = self._read_again(segment)
        else:
            if types != self.types:
                count = self._read_again(segment)
        self._merge(count)

    def _read_again(self, segment: _Segment) -> _SegmentCount:
        table = self._read_widening(segment, use_threads=False)
        return _SegmentCount(table.num_rows, [_count_column(c, with_values=True) for c in table.columns])

    def _read_widening(self, segment: _Segment, *, use_threads: bool) -> pa.Table:
        for _attempt in range(2 * MAX_COLUMNS + 1):
            try:
                return _read_segment(segment, self.names, self.types, self.parse_options, use_threads=use_threads)
            except pa.ArrowInvalid as exc:
                _widen(exc, self.names or self.header, self.types, self.overrides, self.accumulators)
        raise IngestError("The column types could not be settled.", code=ErrorCode.MALFORMED_CSV)

    def _merge(self, count: _SegmentCount) -> None:
        self.rows += count.rows
        for accumulator, column in zip(self.accumulators, count.columns, strict=True):
            accumulator.merge(column)


def _profile_csv_segments(
    stream: BinaryIO,
    delimiter: str,
    header: list[str],
    overrides: dict[str, pa.DataType],
    size: int,
    on_progress: ProgressCallback | None,
    wanted: dict[str, str],
) -> TableProfile:
    # Line-aligned segments: memory stays at a few segments whatever the file's size.
    ragged = _RaggedSeen()
    reader = _SegmentReader(header, overrides, pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=ragged))
    consumed = 0
    buffers = _BUFFERS
    # A stream smaller than the first segment is read into a buffer its own size (+1 to see its end).
    first_bytes = min(2 * CSV_SEGMENT_BYTES, size + 1) if size else 2 * CSV_SEGMENT_BYTES
    segments = _segments(stream, CSV_SEGMENT_BYTES, first_bytes=first_bytes, buffers=buffers)
    try:
        # This thread reads the stream (so decrypts and authenticates it) while the workers parse
        # and count; the counts are taken in file order.
        with ThreadPoolExecutor(max_workers=_PARSERS, thread_name_prefix="csv-ingest") as pool:
            first = next(segments, None)
            if first is not None:
                reader.read_first(first, pool)
                consumed = len(first.view)
                buffers.give(first.buffer)
                del first
                in_flight: deque[tuple[_Segment, _Types, Future[_SegmentCount]]] = deque()
                try:
                    for segment in segments:
                        in_flight.append((segment, *reader.submit(pool, segment)))
                        del segment
                        while len(in_flight) >= _IN_FLIGHT or (in_flight and in_flight[0][2].done()):
                            consumed += _settle_oldest(reader, in_flight, buffers)
                            if on_progress is not None and size:
                                on_progress(min(consumed / size, 1.0))
                    while in_flight:
                        consumed += _settle_oldest(reader, in_flight, buffers)
                        if on_progress is not None and size:
                            on_progress(min(consumed / size, 1.0))
                finally:
                    for _segment, _types, counted in in_flight:
                        counted.cancel()
    finally:
        # The workers have stopped (the executor waited for them): nothing reads the stream now.
        segments.close()
        buffers.wipe()
    if on_progress is not None and size and consumed:
        on_progress(min(consumed / size, 1.0))
    names, types = reader.names, reader.types
    if ragged.seen:
        raise _ragged_error(stream, delimiter, names or [])
    if names is None:
        raise IngestError("The file is empty.", code=ErrorCode.FILE_EMPTY)
    for name in names:
        if pa.types.is_binary(types[name]):
            raise IngestError(
                f"Column {name!r} holds bytes that are not valid UTF-8 text.", code=ErrorCode.INVALID_ENCODING
            )
    if reader.rows == 0:
        raise IngestError("The file has a header but no rows.", code=ErrorCode.NO_ROWS)
    return TableProfile(
        reader.rows, [acc.finish(types[acc.name], reader.rows, wanted.get(acc.name)) for acc in reader.accumulators]
    )


def _settle_oldest(
    reader: _SegmentReader, in_flight: deque[tuple[_Segment, _Types, Future[_SegmentCount]]], buffers: _Buffers
) -> int:
    segment, types, counted = in_flight.popleft()
    reader.settle(segment, types, counted)
    # Counted: its table is gone with the worker's call (or the read again), so the bytes are free.
    buffers.give(segment.buffer)
    return len(segment.view)


def _widen(
    exc: pa.ArrowInvalid,
    names: list[str],
    types: dict[str, pa.DataType],
    overrides: dict[str, pa.DataType],
    accumulators: list[_ColumnAccumulator],
) -> None:
    """Widens the column a conversion error names, or raises what the error means."""
    match = _CONVERSION_ERROR.search(str(exc))
    if match is None:
        raise _csv_error(exc) from None
    column, target = int(match.group(1)), match.group(2)
    if target == "string":
        raise IngestError(
            "A text column holds bytes that are not valid UTF-8.", code=ErrorCode.INVALID_ENCODING
        ) from None
    name = names[column]
    wider = _WIDER.get(target, pa.string())
    types[name] = wider
    if not pa.types.is_string(wider):
        overrides[name] = wider
        return  # integer -> float: what earlier segments counted (nulls) holds for floats too
    overrides[name] = wider
    counted = next((acc for acc in accumulators if acc.name == name), None)
    if counted is not None and counted.distinct is not None:
        # Categories must keep the file's spelling ("007", not 7): read the file again as text.
        raise _ReadAgain
    # Past the category cap (or nothing counted yet): only nulls were kept, and they are the same.


def _ragged_error(stream: BinaryIO, delimiter: str, names: list[str]) -> IngestError:
    """The error path only: a serial pass, every column read as bytes so nothing but the row
    shapes can fail, gives the count of ragged rows and the line of the first."""
    stream.seek(0)
    ragged = _RaggedRows()
    reader = pa_csv.open_csv(
        stream,
        read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=ragged),
        convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.binary())),
    )
    for _batch in reader:
        pass
    try:
        ragged.raise_if_any()
    except IngestError as exc:
        return exc
    return IngestError("Rows have the wrong number of fields.", code=ErrorCode.RAGGED_ROWS)


# Parquet


def open_parquet(stream: BinaryIO, size: int) -> pq.ParquetFile:
    stream.seek(0)
    head = stream.read(4)
    stream.seek(max(0, size - 4))
    tail = stream.read(4)
    if size == 0:
        raise IngestError("The file is empty.", code=ErrorCode.FILE_EMPTY)
    if head != b"PAR1" or tail != b"PAR1":
        raise IngestError("The file is not a Parquet file.", code=ErrorCode.MALFORMED_PARQUET)
    stream.seek(0)
    try:
        return pq.ParquetFile(stream)
    except (pa.ArrowException, OSError):
        raise IngestError("The Parquet footer is corrupt.", code=ErrorCode.MALFORMED_PARQUET) from None


def _iter_parquet(parquet: pq.ParquetFile) -> Iterator[pa.RecordBatch]:
    try:
        yield from parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS)
    except (pa.ArrowException, OSError):
        raise IngestError(
            "The Parquet data does not match the schema its footer declares.", code=ErrorCode.PARQUET_SCHEMA_MISMATCH
        ) from None


def profile_parquet(
    stream: BinaryIO,
    *,
    size: int,
    on_progress: ProgressCallback | None = None,
    column_types: dict[str, str] | None = None,
) -> TableProfile:
    parquet = open_parquet(stream, size)
    schema = parquet.schema_arrow
    check_column_names(schema.names)
    for arrow_field in schema:
        _column_type(arrow_field.type)
    declared_rows = parquet.metadata.num_rows
    accumulators = [_ColumnAccumulator(name) for name in schema.names]
    rows = 0
    for batch in _iter_parquet(parquet):
        if batch.schema.names != schema.names or any(
            not b.type.equals(s.type) for b, s in zip(batch.schema, schema, strict=True)
        ):
            raise IngestError(
                "A Parquet row group does not match the declared schema.", code=ErrorCode.PARQUET_SCHEMA_MISMATCH
            )
        rows += batch.num_rows
        for accumulator, column in zip(accumulators, batch.columns, strict=True):
            accumulator.add(column)
        if on_progress is not None and declared_rows:
            on_progress(min(rows / declared_rows, 1.0))
    if rows != declared_rows:
        raise IngestError(
            f"The Parquet footer declares {declared_rows} rows but the file holds {rows}.",
            code=ErrorCode.PARQUET_SCHEMA_MISMATCH,
        )
    if rows == 0:
        raise IngestError("The file has a schema but no rows.", code=ErrorCode.NO_ROWS)
    wanted = column_types or {}
    return TableProfile(
        rows, [acc.finish(f.type, rows, wanted.get(f.name)) for acc, f in zip(accumulators, schema, strict=True)]
    )


def profile_table(
    stream: BinaryIO,
    *,
    file_format: str,
    size: int,
    delimiter: str = ",",
    on_progress: ProgressCallback | None = None,
    column_types: dict[str, str] | None = None,
) -> TableProfile:
    """``column_types``: the provider's corrections of inferred types (ISSUE-15), applied where
    the whole column can be read as the named type, else the ingest fails naming the column."""
    if file_format == "csv":
        return profile_csv(stream, delimiter=delimiter, size=size, on_progress=on_progress, column_types=column_types)
    if file_format == "parquet":
        return profile_parquet(stream, size=size, on_progress=on_progress, column_types=column_types)
    raise IngestError("Upload CSV or Parquet.", code=ErrorCode.UNSUPPORTED_FORMAT)


def check_head(stream: BinaryIO, *, file_format: str, size: int, delimiter: str = ",") -> dict[str, str | None]:
    """The quick checks run while the uploader waits: the whole file when it is small, else its
    first megabyte (cut at a line end) for CSV and the footer for Parquet. The full pass runs in
    the ingest task. Returns the columns with the type their head suggests (None: the head holds
    no row), for options to be checked against."""
    if file_format == "parquet":
        if size <= HEAD_BYTES:
            return {c.name: c.type for c in profile_parquet(stream, size=size).columns}
        parquet = open_parquet(stream, size)
        check_column_names(parquet.schema_arrow.names)
        return {arrow_field.name: _column_type(arrow_field.type) for arrow_field in parquet.schema_arrow}
    stream.seek(0)
    head = stream.read(HEAD_BYTES)
    if size > HEAD_BYTES:
        cut, _quoted = _line_end(bytearray(head), len(head))
        head = head[:cut] if cut > 1 else head
    try:
        return {c.name: c.type for c in profile_csv(io.BytesIO(head), delimiter=delimiter, size=len(head)).columns}
    except IngestError as exc:
        # A head with a header only is fine when more of the file follows.
        if exc.code != ErrorCode.NO_ROWS or size <= HEAD_BYTES:
            raise
        return dict.fromkeys(_column_names(io.BytesIO(head), delimiter))
