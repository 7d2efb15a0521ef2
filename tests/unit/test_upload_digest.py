"""An upload's SHA-256 is taken behind the sealing, on a helper thread (issue 14): the digest
is the file's, whatever the chunks look like, and the sealed blob opens to the same bytes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from dataspace.catalog.uploads import ContentDigest, seal_chunks
from dataspace.vault import services as vault


def mixed_chunks(content: bytes) -> Iterator[bytes]:
    """Large and small bytes, and a bytearray the caller refills at once (hashed at once)."""
    reused = bytearray()
    position = 0
    for size in [1 << 20, 17, 300_000, 5, 1 << 20, 700_000]:
        piece = content[position : position + size]
        position += size
        if size == 300_000:
            reused[:] = piece
            yield reused  # type: ignore[misc]
            reused[:] = b"\x00" * len(reused)  # refilled: a digest still reading it would be wrong
        else:
            yield piece
    yield content[position:]


def test_the_digest_is_the_files_whatever_the_chunks() -> None:
    content = os.urandom(4 << 20)
    digest = ContentDigest()
    for chunk in mixed_chunks(content):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(content).hexdigest()


@pytest.mark.django_db
def test_a_sealed_upload_carries_its_digest_and_opens_to_its_bytes() -> None:
    content = os.urandom(3 << 20) + b"tail"
    upload = seal_chunks(mixed_chunks(content), name="random.bin")
    try:
        assert upload.sha256 == hashlib.sha256(content).hexdigest()
        assert upload.size == len(content)
        with vault.blob_open(blob_name=upload.blob_name, key=upload.data_key.plaintext) as reader:
            assert b"".join(reader.iter_chunks()) == content
    finally:
        upload.discard()
