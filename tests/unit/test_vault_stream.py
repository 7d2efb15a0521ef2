"""The sealed blob format: round trips at every chunk boundary, and every kind of tampering."""

from __future__ import annotations

import io
import os

import pytest

from dataspace.vault.stream import HEADER, TAG_SIZE, BlobTamperedError, OpeningReader, SealingWriter

pytestmark = pytest.mark.smoke
KEY = bytes(range(32))
CHUNK = 64


def seal(plaintext: bytes, *, name: str = "blob", chunk: int = CHUNK, key: bytes = KEY) -> bytes:
    sink = io.BytesIO()
    writer = SealingWriter(sink, key=key, blob_name=name, chunk_size=chunk)
    for start in range(0, len(plaintext), 7):  # odd write sizes cross chunk edges
        writer.write(plaintext[start : start + 7])
    writer.close()
    return sink.getvalue()


def open_(sealed: bytes, *, name: str = "blob", key: bytes = KEY) -> OpeningReader:
    return OpeningReader(io.BytesIO(sealed), key=key, blob_name=name, sealed_length=len(sealed))


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5])
def test_round_trip_at_chunk_boundaries(size: int) -> None:
    plaintext = os.urandom(size)
    sealed = seal(plaintext)
    reader = open_(sealed)
    assert reader.size == size
    assert reader.read() == plaintext
    assert b"".join(open_(sealed).iter_chunks()) == plaintext


def test_ciphertext_does_not_contain_plaintext() -> None:
    plaintext = b"marker-0123456789" * 20
    assert b"marker" not in seal(plaintext)


def test_seek_reads_any_range() -> None:
    plaintext = os.urandom(5 * CHUNK + 3)
    reader = open_(seal(plaintext))
    for offset in (0, CHUNK - 2, CHUNK, 4 * CHUNK + 1, len(plaintext) - 1):
        reader.seek(offset)
        assert reader.read(10) == plaintext[offset : offset + 10]
    reader.seek(-4, io.SEEK_END)
    assert reader.read() == plaintext[-4:]


def test_flipped_bit_is_detected() -> None:
    sealed = bytearray(seal(os.urandom(3 * CHUNK)))
    sealed[HEADER.size + CHUNK + TAG_SIZE + 5] ^= 1  # inside the second chunk
    with pytest.raises(BlobTamperedError, match="chunk 1"):
        open_(bytes(sealed)).read()


def test_truncation_at_a_chunk_edge_is_detected() -> None:
    sealed = seal(os.urandom(3 * CHUNK + 10))
    truncated = sealed[: HEADER.size + 2 * (CHUNK + TAG_SIZE)]
    with pytest.raises(BlobTamperedError):
        open_(truncated).read()


def test_swapped_chunks_are_detected() -> None:
    sealed = seal(os.urandom(3 * CHUNK + 1))
    size = CHUNK + TAG_SIZE
    first, second = sealed[HEADER.size : HEADER.size + size], sealed[HEADER.size + size : HEADER.size + 2 * size]
    swapped = sealed[: HEADER.size] + second + first + sealed[HEADER.size + 2 * size :]
    with pytest.raises(BlobTamperedError):
        open_(swapped).read()


def test_blob_moved_to_another_name_is_detected() -> None:
    sealed = seal(b"content", name="datasets/a.sealed")
    with pytest.raises(BlobTamperedError):
        open_(sealed, name="datasets/b.sealed").read()


def test_wrong_key_is_detected() -> None:
    with pytest.raises(BlobTamperedError):
        open_(seal(b"content"), key=bytes(32)).read()


def test_garbage_header_is_rejected() -> None:
    with pytest.raises(BlobTamperedError):
        open_(b"not a sealed blob at all, just bytes")


def test_authenticate_unread_checks_only_what_no_read_covered() -> None:
    plaintext = os.urandom(5 * CHUNK + 3)
    whole = open_(seal(plaintext))
    assert whole.read() == plaintext
    assert whole.authenticate_unread() == 0  # read to the end: no second pass
    partial = open_(seal(plaintext))
    partial.seek(2 * CHUNK)
    partial.read(CHUNK)
    assert partial.authenticate_unread() == 5


def test_authenticate_unread_finds_tampering_in_a_chunk_never_read() -> None:
    sealed = bytearray(seal(os.urandom(4 * CHUNK)))
    sealed[HEADER.size + 3 * (CHUNK + TAG_SIZE) + 2] ^= 1  # inside the fourth chunk
    reader = open_(bytes(sealed))
    assert len(reader.read(CHUNK)) == CHUNK
    with pytest.raises(BlobTamperedError, match="chunk 3"):
        reader.authenticate_unread()


@pytest.mark.parametrize("given_as", ["memoryview", "bytes", "reused bytearray"])
@pytest.mark.parametrize("write_size", [1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 2])
@pytest.mark.parametrize("size", [0, CHUNK, 2 * CHUNK, 4 * CHUNK + 9])
def test_round_trip_whatever_the_write_sizes(size: int, write_size: int, given_as: str) -> None:
    # Whole chunks are sealed straight from the caller's bytes (a last whole chunk of immutable
    # bytes is held, not copied), split ones through the buffer; a caller that reuses its buffer
    # for the next piece must not change what was written.
    plaintext = os.urandom(size)
    sink = io.BytesIO()
    writer = SealingWriter(sink, key=KEY, blob_name="blob", chunk_size=CHUNK)
    reused = bytearray(write_size)
    for start in range(0, size, write_size):
        piece = plaintext[start : start + write_size]
        if given_as == "memoryview":
            writer.write(memoryview(plaintext)[start : start + write_size])
        elif given_as == "bytes":
            writer.write(piece)
        else:
            reused[: len(piece)] = piece
            writer.write(memoryview(reused)[: len(piece)])
            reused[:] = bytes(len(reused))
    writer.close()
    sealed = sink.getvalue()
    assert len(sealed) == HEADER.size + size + max(1, -(-size // CHUNK)) * TAG_SIZE
    assert open_(sealed).read() == plaintext


@pytest.mark.parametrize("start", [0, 5, CHUNK])
def test_reads_into_a_large_buffer_cover_whole_and_partial_chunks(start: int) -> None:
    # Whole chunks are decrypted straight into the caller's buffer, the edges through the cache.
    plaintext = os.urandom(4 * CHUNK + 9)
    reader = open_(seal(plaintext))
    reader.seek(start)
    buffer = bytearray(len(plaintext) + 10)
    assert reader.readinto(buffer) == len(plaintext) - start
    assert bytes(buffer[: len(plaintext) - start]) == plaintext[start:]
    assert reader.authenticate_unread() == (1 if start >= CHUNK else 0)


def test_a_tampered_chunk_read_into_the_callers_buffer_leaves_no_plaintext_there() -> None:
    plaintext = b"secret-value-" * 40
    sealed = bytearray(seal(plaintext))
    sealed[HEADER.size + 2 * (CHUNK + TAG_SIZE) + 3] ^= 1  # inside the third chunk
    reader = open_(bytes(sealed))
    buffer = bytearray(len(plaintext))
    with pytest.raises(BlobTamperedError, match="chunk 2"):
        reader.readinto(buffer)
    assert buffer[2 * CHUNK : 3 * CHUNK] == bytes(CHUNK)
