"""How the platform's values are written on chain: pure functions, no node needed.

An auditor recomputes each of these from public facts (an offer's purpose names, a dataset's
UUID, a job's agreement and nonce), so they never change once contracts hold values made by
them.
"""

from __future__ import annotations

import uuid

from eth_utils.crypto import keccak

MICRO = 1_000_000


def label_hash(label: str) -> bytes:
    """A purpose, operation or refund reason as the contracts see it: keccak256 of its UTF-8
    text, so an auditor maps a hash back by hashing the names an offer lists."""
    return bytes(keccak(text=label))


def epsilon_micro(epsilon: float) -> int:
    """Epsilon as the contracts count it: integer millionths."""
    return round(epsilon * MICRO)


def dataset_chain_id(dataset_id: uuid.UUID) -> bytes:
    """The dataset's id on chain: its UUID, left-padded to 32 bytes (reversible, unique)."""
    return dataset_id.bytes.rjust(32, b"\0")


def job_chain_id(*, agreement_id: int, nonce: int) -> bytes:
    """The contract's job id: agreement id in the high 128 bits, the consumer's nonce below."""
    return ((agreement_id << 128) | nonce).to_bytes(32, "big")
