"""The RLCT1 blob: a run of serialized ciphertexts in one blob, written once, read lazily.

``b"RLCT1\\n"``, then per chunk a 4-byte big-endian length and the CKKSVector's ``serialize()``
bytes. A series' blob holds its chunks in row order; a series' total is a blob of one chunk.
Every blob is hashed as it is written (sha256 of all its bytes, recorded in the layout); reading
checks the framing only (magic, lengths, chunk count), the hash is the caller's to check.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from typing import IO

from dataspace.vault import blobs

MAGIC = b"RLCT1\n"
_LENGTH = struct.Struct(">I")
MAX_CHUNK_BYTES = 64 << 20  # a serialized N=8192 ciphertext is < 1 MB; anything larger is corruption


class FramedWriter:
    """Appends chunks to a new blob, hashing every byte written."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._sink: IO[bytes] = blobs.open_for_write(name)
        self._hasher = hashlib.sha256()
        self.chunks = 0
        self._write(MAGIC)

    def _write(self, data: bytes) -> None:
        self._sink.write(data)
        self._hasher.update(data)

    def append(self, chunk: bytes) -> None:
        self._write(_LENGTH.pack(len(chunk)))
        self._write(chunk)
        self.chunks += 1

    def close(self) -> str:
        """Closes the blob; returns its sha256."""
        self._sink.close()
        return self._hasher.hexdigest()


def write_framed(name: str, chunks: Iterable[bytes]) -> str:
    """Writes a blob of ``chunks``; returns its sha256."""
    writer = FramedWriter(name)
    try:
        for chunk in chunks:
            writer.append(chunk)
    finally:
        sha256 = writer.close()
    return sha256


def read_framed(name: str, chunks: int, label: str) -> Iterator[bytes]:
    """Each of the ``chunks`` chunks of blob ``name``, read lazily; ``label`` names it in errors."""
    with blobs.open_for_read(name) as source:
        if source.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"{label}: not an RLCT1 blob")
        for index in range(chunks):
            header = source.read(_LENGTH.size)
            if len(header) != _LENGTH.size:
                raise ValueError(f"{label}: truncated at chunk {index} of {chunks}")
            (length,) = _LENGTH.unpack(header)
            if length > MAX_CHUNK_BYTES:
                raise ValueError(f"{label}: chunk {index} claims {length} bytes")
            chunk = source.read(length)
            if len(chunk) != length:
                raise ValueError(f"{label}: truncated in chunk {index} of {chunks}")
            yield chunk
        if source.read(1):
            raise ValueError(f"{label}: bytes after the last of {chunks} chunks")
