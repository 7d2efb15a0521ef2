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
        # Two buffers for the life of the writer: a blob of any size is sealed without a new
        # allocation per chunk (fresh memory per chunk cost more CPU than the encryption itself).
        self._pending = bytearray(chunk_size)
        self._filled = 0
        # A whole chunk of the caller's ``bytes`` waiting for the next write: immutable, so it is
        # held rather than copied.
        self._held: memoryview | None = None
        self._sealed = bytearray(chunk_size + TAG_SIZE)
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
        size = self._chunk_size
        while view:
            if self._held is not None:
                self._seal(self._held, last=False)
                self._held = None
            if self._filled == size:
                self._seal(self._pending, last=False)
                self._filled = 0
            if self._filled == 0 and len(view) > size:
                self._seal(view[:size], last=False)
                view = view[size:]
                continue
            if self._filled == 0 and len(view) == size and type(data) is bytes:
                self._held = view
                break
            take = min(size - self._filled, len(view))
            self._pending[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
        return written

    def _seal(self, chunk: bytes | bytearray | memoryview, *, last: bool) -> None:
        out = memoryview(self._sealed)[: len(chunk) + TAG_SIZE]
        self._aead.encrypt_into(_nonce(self._prefix, self._index, last), chunk, self._aad, out)
        # The sink copies or writes what it is given before returning (the io contract), so the
        # buffer is free again for the next chunk.
        self._sink.write(out)
        self._index += 1

    def close(self) -> None:
        if not self._closed:
            if self._held is not None:
                self._seal(self._held, last=True)
                self._held = None
            else:
                self._seal(memoryview(self._pending)[: self._filled], last=True)
            self._filled = 0
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
        self._chunk_size: int = chunk_size
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
        self._sealed = bytearray(chunk_size + TAG_SIZE)
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
            sealed = self._read_sealed(index)
            try:
                self._cached = self._aead.decrypt(self._chunk_nonce(index), sealed, self._aad)
            except InvalidTag:
                raise self._tampered(f"sealed blob failed authentication at chunk {index}") from None
            self._cached_index = index
            self._authenticated.add(index)
        return self._cached

    def _open_into(self, index: int, out: memoryview) -> None:
        """Authenticates chunk ``index`` and decrypts it straight into ``out`` (exactly its
        plaintext length): no new memory per chunk."""
        sealed = self._read_sealed(index)
        try:
            self._aead.decrypt_into(self._chunk_nonce(index), sealed, self._aad, out)
        except (InvalidTag, ValueError):  # ValueError: a chunk shorter on disk than its place
            # Whatever was decrypted before the tag failed is no plaintext anyone may see.
            out[:] = bytes(len(out))
            raise self._tampered(f"sealed blob failed authentication at chunk {index}") from None
        self._authenticated.add(index)

    def _read_sealed(self, index: int) -> memoryview:
        """Chunk ``index`` as stored, in one buffer reused for every chunk."""
        self._source.seek(HEADER.size + index * (self._chunk_size + TAG_SIZE))
        sealed = memoryview(self._sealed)
        readinto = getattr(self._source, "readinto", None)
        if readinto is None:  # a storage whose files only read()
            data = self._source.read(len(sealed))
            sealed[: len(data)] = data
            return sealed[: len(data)]
        filled = 0
        while filled < len(sealed):
            got: int | None = readinto(sealed[filled:])
            if not got:
                break
            filled += got
        return sealed[:filled]

    def _tampered(self, message: str) -> Exception:
        """The error a chunk that fails authentication raises (a subclass may raise its own)."""
        return BlobTamperedError(message)

    def _chunk_nonce(self, index: int) -> bytes:
        return _nonce(self._prefix, index, index == self._chunks - 1)

    def _plain_length(self, index: int) -> int:
        return self._chunk_size if index < self._chunks - 1 else self._size - index * self._chunk_size

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._pos < self._size:
            index, offset = divmod(self._pos, self._chunk_size)
            length = self._plain_length(index)
            if offset == 0 and index != self._cached_index and len(view) - filled >= length:
                # A whole chunk the caller has room for is decrypted straight into its buffer.
                self._open_into(index, view[filled : filled + length])
                piece_length = length
            else:
                piece = memoryview(self._chunk(index))[offset : offset + len(view) - filled]
                view[filled : filled + len(piece)] = piece
                piece_length = len(piece)
            filled += piece_length
            self._pos += piece_length
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
