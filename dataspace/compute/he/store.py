"""An encrypted store on blob storage, once written: its series read by key, and all of it deleted."""

from __future__ import annotations

from collections.abc import Iterator

from dataspace.compute.he.framing import read_framed
from dataspace.compute.he.layout import PACK_PREFIX, PRODUCT_PREFIX, TOTAL_PREFIX, StoreLayout
from dataspace.vault import blobs


def read_series(layout: StoreLayout, key: str) -> Iterator[bytes]:
    """Each chunk's serialized ciphertext, in row order, read lazily. Checks the framing only
    (magic, lengths, chunk count); the blob's sha256 is the caller's to check if it wants.
    ``total_key(key)`` reads the series' materialised total instead: one ciphertext (KeyError if
    the layout has none as a blob of its own); ``product_key(a, b)`` the materialised total of a * b
    (KeyError likewise); ``pack_key(i)`` the layout's pack i, one ciphertext (KeyError if none)."""
    if key.startswith(PACK_PREFIX):
        index = int(key.removeprefix(PACK_PREFIX))
        if not 0 <= index < len(layout.packs):
            raise KeyError(f"the store has no pack {index}")
        name, chunks = layout.packs[index].blob_name, 1
    elif key.startswith(PRODUCT_PREFIX):
        product = layout.products.get(key)
        if product is None or product.blob_name is None:
            raise KeyError(f"the store has no materialised product {key!r} of its own")
        name, chunks = product.blob_name, 1
    elif key.startswith(TOTAL_PREFIX):
        info = layout.series[key.removeprefix(TOTAL_PREFIX)]
        if info.total_blob is None:
            raise KeyError(f"series {info.key!r} has no materialised total of its own")
        name, chunks = info.total_blob, 1
    else:
        info = layout.series[key]
        name, chunks = info.blob_name, info.chunks
    yield from read_framed(name, chunks, f"series {key!r}")


def delete_store(layout: StoreLayout) -> None:
    for name in layout.blob_names():
        if blobs.exists(name):
            blobs.delete(name)
