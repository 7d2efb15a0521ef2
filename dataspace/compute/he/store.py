"""An encrypted store on blob storage, once written: its series read by key, and all of it deleted."""

from __future__ import annotations

from collections.abc import Iterator

from dataspace.compute.he.framing import read_framed
from dataspace.compute.he.layout import PRODUCT_PREFIX, TOTAL_PREFIX, StoreLayout
from dataspace.vault import blobs


def read_series(layout: StoreLayout, key: str) -> Iterator[bytes]:
    """Each chunk's serialized ciphertext, in row order, read lazily. Checks the framing only
    (magic, lengths, chunk count); the blob's sha256 is the caller's to check if it wants.
    ``total_key(key)`` reads the series' materialised total instead: one ciphertext (KeyError if
    the layout has none); ``product_key(a, b)`` the materialised total of a * b (KeyError likewise)."""
    if key.startswith(PRODUCT_PREFIX):
        if key not in layout.products:
            raise KeyError(f"the store has no materialised product {key!r}")
        name, chunks = layout.products[key].blob_name, 1
    elif key.startswith(TOTAL_PREFIX):
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
    for product in layout.products.values():
        if blobs.exists(product.blob_name):
            blobs.delete(product.blob_name)
