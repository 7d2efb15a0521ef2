"""Reading back what a store holds, for tests only: a series' rows decrypted in order, from its
full chunks and (a packed store) its tail in a pack."""

from __future__ import annotations

from typing import Any

import numpy as np
import tenseal as ts

from dataspace.compute.he.layout import StoreLayout, pack_key
from dataspace.compute.he.store import read_series


def stored_rows(layout: StoreLayout, key: str, secret_context: Any) -> np.ndarray:
    """Series ``key`` as stored (normalised), one value per row: its chunks, then its packed tail."""
    values = [ts.ckks_vector_from(secret_context, chunk).decrypt() for chunk in read_series(layout, key)]
    rows = np.concatenate(values) if values else np.zeros(0)
    tail = layout.series[key].tail
    if tail is None:
        return rows[: layout.rows]
    (pack,) = read_series(layout, pack_key(tail.pack))
    packed = ts.ckks_vector_from(secret_context, pack).decrypt()
    return np.concatenate([rows, packed[tail.slot : tail.slot + layout.tail_rows]])
