"""An encrypted store on blob storage, once written: its series read by key, and all of it deleted."""

from __future__ import annotations

from collections.abc import Iterator

from dataspace.compute.he.framing import read_framed
from dataspace.compute.he.layout import TOTAL_PREFIX, StoreLayout
from dataspace.vault import blobs


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
    yield from read_framed(name, chunks, f"series {key!r}")


def delete_store(layout: StoreLayout) -> None:
    for info in layout.series.values():
        for name in (info.blob_name, info.total_blob):
            if name is not None and blobs.exists(name):
                blobs.delete(name)
