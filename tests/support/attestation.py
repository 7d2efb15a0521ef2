"""Real attestation vectors for the verifier tests, read in place from the shared directory
(never copied into the project), and the bit-flipping the tests apply to them."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VECTORS = Path(os.environ.get("REDLAKE_ATTESTATION_VECTORS", ROOT.parent / "shared" / "attestation-vectors"))

requires_vectors = pytest.mark.skipif(
    not (VECTORS / "README.md").is_file(),
    reason=f"the real attestation vectors are not at {VECTORS} (set REDLAKE_ATTESTATION_VECTORS)",
)

# Every byte when ATTESTATION_EXHAUSTIVE=1 (about a minute); otherwise a spread sample, which
# with the named positions in each test keeps the unit suite fast.
FLIP_STRIDE = 1 if os.environ.get("ATTESTATION_EXHAUSTIVE") == "1" else 17


def vector(relative: str) -> bytes:
    return (VECTORS / relative).read_bytes()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def flip(data: bytes, position: int, bit: int | None = None) -> bytes:
    """``data`` with one bit flipped at ``position`` (bit ``position % 8`` unless given)."""
    changed = bytearray(data)
    changed[position] ^= 1 << (position % 8 if bit is None else bit)
    return bytes(changed)


def spread(length: int, stride: int = FLIP_STRIDE) -> list[int]:
    return sorted({*range(0, length, stride), length - 1})
