"""Plaintext values, read and shown one way wherever the engine touches them: a column's numbers
(nulls and NaN absent), clamped to its bounds, its categories, the bucket (and the cell: below,
above, null) of a number, and a number rounded to significant digits. The store is encrypted
from what these read, the plaintext references check the engine with them, and the cohort counts
taken at ingest bucket with them: any two disagreeing would show up as a wrong answer or a wrong
refusal.
"""

from __future__ import annotations

import enum
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _plain(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array of the column's own values (chunks combined, a dictionary decoded)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def _is_text(array: pa.Array) -> bool:
    return bool(pa.types.is_string(array.type) or pa.types.is_large_string(array.type))


def numeric_values(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls as 0, validity mask) as float64."""
    array = _plain(array)
    if _is_text(array):
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


def _strings(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    array = _plain(array)
    return array if _is_text(array) else pc.cast(array, pa.string())


def category_labels(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Each row's category as a Python string (None for nulls)."""
    return np.asarray(_strings(array).to_pylist(), dtype=object)


def category_index(array: pa.Array | pa.ChunkedArray, categories: tuple[str, ...]) -> np.ndarray:
    """Index into ``categories`` per row, -1 for nulls and values outside them."""
    strings = _strings(array)
    index = pc.index_in(strings, value_set=pa.array(list(categories), type=strings.type))
    return np.asarray(index.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def clamped(values: np.ndarray, valid: np.ndarray, bounds: tuple[float, float] | None) -> np.ndarray:
    """Every present value clamped to ``bounds`` (None: left as it is), every null 0."""
    if bounds is None:
        return np.where(valid, values, 0.0)
    return np.where(valid, np.clip(values, bounds[0], bounds[1]), 0.0)


def bucket_index(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Bucket per value, -1 outside the edges; bucket i = [e[i], e[i+1]), the last one closed."""
    array = np.asarray(edges)
    index = np.searchsorted(array, values, side="right") - 1
    index[values == array[-1]] = len(array) - 2
    index[(index < 0) | (index >= len(array) - 1)] = -1
    return index


# The cells of a bucketed column that are not buckets, as ``cell_index`` codes them.
BELOW_CELL, ABOVE_CELL, NULL_CELL = -1, -2, -3


def cell_index(values: np.ndarray, valid: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Per row its bucket, or ``BELOW_CELL`` (below the first edge), ``ABOVE_CELL`` (above the
    last: the last bucket is closed) or ``NULL_CELL``: every row in exactly one cell."""
    index = bucket_index(values, edges)
    index[values < edges[0]] = BELOW_CELL
    index[values > edges[-1]] = ABOVE_CELL
    index[~valid] = NULL_CELL
    return index


class Rounding(enum.Enum):
    NEAREST = "nearest"
    DOWN = "down"
    UP = "up"


def round_significant(value: float, digits: int, rounding: Rounding = Rounding.NEAREST) -> float:
    """``value`` to ``digits`` significant digits: to the nearest (ties to even, on the exact
    binary value), or down or up to the next such number (an outer bucket edge that must keep
    every value inside)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    if rounding is Rounding.NEAREST:
        return float(f"{value:.{digits}g}")
    step = 10.0 ** (math.floor(math.log10(abs(value))) - digits + 1)
    scaled = value / step
    return float(f"{(math.floor(scaled) if rounding is Rounding.DOWN else math.ceil(scaled)) * step:.{digits}g}")


def rounded(data: Any, digits: int) -> Any:
    """Every measured number in a released JSON value rounded to ``digits`` significant digits. A
    Python ``int`` is exact by construction (a bucket's index; aggregates are floats) and kept."""
    if isinstance(data, bool | int) or data is None or isinstance(data, str):
        return data
    if isinstance(data, float | np.floating | np.integer):
        return round_significant(float(data), digits)
    if isinstance(data, dict):
        return {k: rounded(v, digits) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [rounded(v, digits) for v in data]
    raise TypeError(type(data))
