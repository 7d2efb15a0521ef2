"""How the platform's values are written on chain: pure functions, no node needed.

An auditor recomputes each of these from public facts (an offer's purpose names, a dataset's
UUID, a job's agreement and nonce), so they never change once contracts hold values made by
them.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from eth_utils.crypto import keccak

from dataspace.canonical import sha256_canonical

NANO = 1_000_000_000
UINT64_MAX = 2**64 - 1


def label_hash(label: str) -> bytes:
    """A purpose, operation or refund reason as the contracts see it: keccak256 of its UTF-8
    text, so an auditor maps a hash back by hashing the names an offer lists."""
    return bytes(keccak(text=label))


def rho_nano(rho: float) -> int:
    """A privacy loss as the contracts count it: zCDP rho in integer billionths (1e9 = 1.0 rho),
    rounded to the nearest. Refuses (ValueError) what is no loss at all or no uint64: negative,
    NaN, infinite, or above 2^64 - 1 nano-rho."""
    if math.isnan(rho) or math.isinf(rho) or rho < 0:
        raise ValueError(f"A privacy loss is a finite rho >= 0, not {rho!r}.")
    nano = round(rho * NANO)
    if nano > UINT64_MAX:
        raise ValueError(f"rho {rho!r} does not fit the contracts' uint64 nano-rho.")
    return nano


def params_hash(params: dict[str, Any]) -> bytes:
    """The hash a consumer signs over a job's parameters (``paramsHash`` in the Usage message):
    SHA-256 of their canonical JSON, so any client that sorts keys and drops whitespace gets the
    same 32 bytes from the same parameters."""
    return sha256_canonical(params)


def dataset_chain_id(dataset_id: uuid.UUID, *, provider: str) -> bytes:
    """The dataset's id on chain, bound to its provider: the first 16 bytes of the provider's
    address, then the dataset's UUID. DatasetRegistry refuses to register an id for any other
    address (``NotDatasetProvider``), so nobody can take, or block, another provider's id; an
    auditor reads the provider's prefix and the UUID straight off the id."""
    address = bytes.fromhex(provider.removeprefix("0x"))
    if len(address) != 20:
        raise ValueError(f"A provider is a 20-byte address, not {provider!r}.")
    return address[:16] + dataset_id.bytes


def dataset_uuid(chain_dataset_id: bytes) -> uuid.UUID:
    """The catalogue's UUID of a dataset id read from the chain (its last 16 bytes)."""
    return uuid.UUID(bytes=bytes(chain_dataset_id)[16:])


def job_chain_id(*, agreement_id: int, nonce: int) -> bytes:
    """The contract's job id: agreement id in the high 128 bits, the consumer's nonce below."""
    return ((agreement_id << 128) | nonce).to_bytes(32, "big")
