"""Sealed job inputs: the vault's own blob format, read inside the enclave.

An input is a table (Parquet or CSV bytes) sealed with its dataset's data key in the vault's
chunked AES-256-GCM format (``dataspace/vault/stream.py``, magic ``RLV1``): a 32-byte header,
then fixed-size chunks, each sealed with a nonce made of the header's random prefix, the chunk
index and a last-chunk flag; the header and the blob's name are the AAD of every chunk. So the
vault's blobs are handed to a sandbox as they are stored, and a blob cannot be truncated,
reordered or swapped for another blob sealed under the same key without the enclave noticing.

The format is re-implemented here (a few lines, tested against the vault's writer) because the
enclave runtime mounts this package and nothing of the Django project.
"""

from __future__ import annotations

import enum
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"RLV1"
HEADER = struct.Struct(">4sI7s17x")  # magic, chunk size, nonce prefix, reserved (as the vault)
TAG_SIZE = 16
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 64 << 20
_LAST = 1
TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class InputFormat(enum.StrEnum):
    PARQUET = "parquet"
    CSV = "csv"


class SealedBlobError(Exception):
    """The sealed bytes failed authentication: modified, truncated, swapped or under another key."""


@dataclass(frozen=True)
class SealedInput:
    """One table of a job: a sealed blob on the launcher's disk, the name its AAD carries, the id
    of the data key it is sealed under (what the key broker releases) and the table name the
    algorithm sees."""

    name: str
    path: Path
    blob_name: str
    key_id: str
    format: InputFormat = InputFormat.PARQUET

    def __post_init__(self) -> None:
        if not TABLE_NAME.match(self.name):
            raise ValueError("a table name is a lower-case identifier of at most 63 characters")
        if not self.blob_name or not self.key_id:
            raise ValueError("a sealed input needs its blob name and its data key id")
        object.__setattr__(self, "format", InputFormat(self.format))


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, _LAST if last else 0)


def seal(plaintext: bytes, *, key: bytes, blob_name: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> bytes:
    """The vault's sealed form of ``plaintext`` (what ``SealingWriter`` writes)."""
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError("chunk size out of range")
    aead = AESGCM(key)
    prefix = os.urandom(7)
    header = HEADER.pack(MAGIC, chunk_size, prefix)
    aad = header + blob_name.encode()
    chunks = [plaintext[i : i + chunk_size] for i in range(0, len(plaintext), chunk_size)] or [b""]
    out = [header]
    for index, chunk in enumerate(chunks):
        out.append(aead.encrypt(_nonce(prefix, index, index == len(chunks) - 1), chunk, aad))
    return b"".join(out)


def open_sealed(sealed: bytes, *, key: bytes, blob_name: str) -> bytes:
    """The plaintext of a sealed blob; ``SealedBlobError`` (saying nothing about the contents) if
    any chunk fails authentication or the framing is wrong."""
    if len(sealed) < HEADER.size + TAG_SIZE:
        raise SealedBlobError("sealed blob too short")
    header = sealed[: HEADER.size]
    magic, chunk_size, prefix = HEADER.unpack(header)
    if magic != MAGIC or not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise SealedBlobError("unknown sealed blob header")
    try:
        aead = AESGCM(key)
    except ValueError as exc:
        raise SealedBlobError("the data key has the wrong size") from exc
    aad = header + blob_name.encode()
    body = memoryview(sealed)[HEADER.size :]
    step = chunk_size + TAG_SIZE
    count = -(-len(body) // step)
    plain = bytearray()
    for index in range(count):
        piece = body[index * step : (index + 1) * step]
        try:
            plain += aead.decrypt(_nonce(prefix, index, index == count - 1), bytes(piece), aad)
        except InvalidTag:
            raise SealedBlobError("sealed blob failed authentication") from None
    return bytes(plain)
