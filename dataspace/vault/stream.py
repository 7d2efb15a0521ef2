"""Chunked AES-256-GCM for blobs of any size (a STREAM-style construction).

Layout: a 32-byte header, then chunks of ``chunk_size`` plaintext bytes, each sealed on its own
(ciphertext + 16-byte tag). The nonce of chunk *i* is the header's 7-byte random prefix, *i* as a
4-byte counter and a 1-byte "last chunk" flag, so chunks cannot be reordered, dropped, duplicated
or truncated without detection; the header and the blob's name are authenticated as AAD of every
chunk, so a chunk cannot be moved into another blob either. Fixed chunk sizes make the
ciphertext seekable: Parquet readers need random access to the footer.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"RLV1"
HEADER = struct.Struct(">4sI7s17x")  # magic, chunk size, nonce prefix, reserved
TAG_SIZE = 16
_LAST = 1


class BlobTamperedError(Exception):
    """A sealed blob failed authentication: it was modified, truncated or swapped."""


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, _LAST if last else 0)


def sealed_size(plain_size: int, chunk_size: int) -> int:
    chunks = max(1, -(-plain_size // chunk_size))
    return HEADER.size + plain_size + chunks * TAG_SIZE


class SealingWriter:
    """Encrypts whatever is written to it into ``sink``; ``close()`` seals the final chunk.

    Memory use is one chunk, whatever the blob's size.
    """

    def __init__(self, sink: IO[bytes], *, key: bytes, blob_name: str, chunk_size: int):
        self._sink = sink
        self._aead = AESGCM(key)
        self._prefix = os.urandom(7)
        self._header = HEADER.pack(MAGIC, chunk_size, self._prefix)
        self._aad = self._header + blob_name.encode()
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._index = 0
        self._closed = False
        self.plain_bytes = 0
        sink.write(self._header)

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        written = len(view)
        self.plain_bytes += written
        # A full chunk is sealed only once more data follows it, so the true last chunk is sealed
        # with the last flag (by close). Whole chunks are sealed straight from the caller's bytes:
        # only a chunk split across writes is copied.
        if self._buffer:
            take = min(self._chunk_size - len(self._buffer), len(view))
            self._buffer += view[:take]
            view = view[take:]
            if not view:
                return written
            self._seal(self._buffer, last=False)
            self._buffer = bytearray()
        while len(view) > self._chunk_size:
            self._seal(view[: self._chunk_size], last=False)
            view = view[self._chunk_size :]
        self._buffer += view
        return written

    def _seal(self, chunk: bytes | bytearray | memoryview, *, last: bool) -> None:
        self._sink.write(self._aead.encrypt(_nonce(self._prefix, self._index, last), chunk, self._aad))
        self._index += 1

    def close(self) -> None:
        if not self._closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True


class OpeningReader(io.RawIOBase):
    """A seekable, read-only plaintext view of a sealed blob; authenticates every chunk it reads."""

    def __init__(self, source: IO[bytes], *, key: bytes, blob_name: str, sealed_length: int):
        super().__init__()
        self._source = source
        header = source.read(HEADER.size)
        if len(header) != HEADER.size:
            raise BlobTamperedError("sealed blob is shorter than its header")
        magic, chunk_size, prefix = HEADER.unpack(header)
        if magic != MAGIC or chunk_size <= 0:
            raise BlobTamperedError("sealed blob has an unknown header")
        self._aead = AESGCM(key)
        self._prefix = prefix
        self._aad = header + blob_name.encode()
        self._chunk_size = chunk_size
        body = sealed_length - HEADER.size
        self._chunks = -(-body // (chunk_size + TAG_SIZE))
        if self._chunks == 0:
            raise BlobTamperedError("sealed blob has no chunks")
        last_len = body - (self._chunks - 1) * (chunk_size + TAG_SIZE) - TAG_SIZE
        if last_len < 0:
            raise BlobTamperedError("sealed blob is truncated")
        self._size: int = (self._chunks - 1) * chunk_size + last_len
        self._pos = 0
        self._cached_index = -1
        self._cached = b""
        self._authenticated: set[int] = set()

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _chunk(self, index: int) -> bytes:
        if index != self._cached_index:
            self._source.seek(HEADER.size + index * (self._chunk_size + TAG_SIZE))
            sealed = self._source.read(self._chunk_size + TAG_SIZE)
            last = index == self._chunks - 1
            try:
                self._cached = self._aead.decrypt(_nonce(self._prefix, index, last), sealed, self._aad)
            except InvalidTag:
                raise BlobTamperedError(f"sealed blob failed authentication at chunk {index}") from None
            self._cached_index = index
            self._authenticated.add(index)
        return self._cached

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        filled = 0
        while filled < len(buffer) and self._pos < self._size:
            index, offset = divmod(self._pos, self._chunk_size)
            piece = memoryview(self._chunk(index))[offset : offset + len(buffer) - filled]
            buffer[filled : filled + len(piece)] = piece
            filled += len(piece)
            self._pos += len(piece)
        return filled

    def iter_chunks(self) -> Iterator[bytes]:
        """Yields the whole plaintext chunk by chunk, from the start (sequential, no re-reads)."""
        for index in range(self._chunks):
            yield self._chunk(index)

    def authenticate_unread(self) -> int:
        """Authenticates every chunk no read has yet; returns how many that took. A reader that
        went through the whole plaintext has nothing left: no second decryption pass."""
        unread = [index for index in range(self._chunks) if index not in self._authenticated]
        for index in unread:
            self._chunk(index)
        return len(unread)

    def close(self) -> None:
        self._source.close()
        super().close()
