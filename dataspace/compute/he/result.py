"""What asking for an operation ends in: a refusal (``OperationRejected``, with the ``ErrorCode``
that says why), the encrypted result an HE worker hands the custodian (``EncryptedResult``, with
its wire format and digest), or the decrypted aggregates the custodian noises and releases
(``Aggregate``).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

from dataspace.errors import ErrorCode


class OperationRejected(Exception):
    """A request the operation cannot run on this store. ``code`` is one of the refusal reasons
    (``unknown_operation`` ... ``column_unbounded``), returned to the consumer as the
    ``details.reason`` of an ``invalid_operation`` error; or, at the custodian, an encrypted result
    that is not the shape the request implies (``result_shape_mismatch``)."""

    def __init__(self, message: str, *, code: ErrorCode) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Aggregate:
    """One decrypted number, before noise. Its sensitivities are from the column bounds, never the
    data (``terms``); its cohorts are count aggregates in the same list, every one of which must
    reach the policy's k before anything is released."""

    name: str
    value: float
    sensitivity: float  # L1 sensitivity (real units) under adding/removing one row
    cohort: str  # name of the count Aggregate (in the same list) of the rows that contribute to it
    l2_sensitivity: float = -1.0  # L2 sensitivity; a scalar's equals its L1 (the default: -1, copied)
    cohorts: tuple[str, ...] = ()  # every count that must reach k, ``cohort`` first (default: just it)

    def __post_init__(self) -> None:
        if self.l2_sensitivity < 0:
            object.__setattr__(self, "l2_sensitivity", self.sensitivity)
        if not self.cohorts:
            object.__setattr__(self, "cohorts", (self.cohort,))


@dataclass(frozen=True)
class EncryptedResult:
    parts: dict[str, bytes]  # name -> serialized CKKSVector
    folded: dict[str, bool]  # True: value in slot 0 (rotate-summed); False: size-3 slot vector to fold

    _MAGIC = b"RLRS1\n"
    _LENGTH = struct.Struct(">Q")

    def digest(self) -> str:
        """sha256 over the sorted names, each with its flag and its bytes, length-prefixed so no
        two different results can share a digest."""
        hasher = hashlib.sha256()
        for name in sorted(self.parts):
            encoded = name.encode()
            hasher.update(self._LENGTH.pack(len(encoded)) + encoded)
            hasher.update(b"\x01" if self.folded[name] else b"\x00")
            hasher.update(self._LENGTH.pack(len(self.parts[name])) + self.parts[name])
        return hasher.hexdigest()

    def to_bytes(self) -> bytes:
        names = sorted(self.parts)
        header = json.dumps(
            {"parts": [[name, self.folded[name], len(self.parts[name])] for name in names]}, separators=(",", ":")
        ).encode()
        return b"".join([self._MAGIC, self._LENGTH.pack(len(header)), header, *(self.parts[n] for n in names)])

    @classmethod
    def from_bytes(cls, data: bytes) -> EncryptedResult:
        if not data.startswith(cls._MAGIC):
            raise ValueError("not an encrypted result")
        offset = len(cls._MAGIC)
        (header_length,) = cls._LENGTH.unpack_from(data, offset)
        offset += cls._LENGTH.size
        header = json.loads(data[offset : offset + header_length])
        offset += header_length
        parts: dict[str, bytes] = {}
        folded: dict[str, bool] = {}
        for name, flag, length in header["parts"]:
            parts[name] = data[offset : offset + length]
            if len(parts[name]) != length:
                raise ValueError(f"encrypted result truncated in part {name!r}")
            folded[name] = bool(flag)
            offset += length
        if offset != len(data):
            raise ValueError("bytes after the encrypted result's last part")
        return cls(parts=parts, folded=folded)
