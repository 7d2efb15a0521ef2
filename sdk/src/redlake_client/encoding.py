"""The platform's encodings, recomputed on the consumer's side (so nothing is taken on trust):
canonical JSON, the parameters' hash, label hashes, job ids, result commitments."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from eth_utils.crypto import keccak


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8 as it is: the bytes the platform hashes and signs."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def params_hash(params: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonical_json(params)).digest()


def label_hash(label: str) -> bytes:
    return bytes(keccak(text=label))


def job_chain_id(*, agreement_id: int, nonce: int) -> bytes:
    return ((agreement_id << 128) | nonce).to_bytes(32, "big")


def dataset_chain_id(dataset_id: uuid.UUID | str, *, provider: str) -> bytes:
    """The dataset's id on chain, bound to its provider: the first 16 bytes of the provider's
    address, then the dataset's UUID (DatasetRegistry registers it for that address only)."""
    address = bytes.fromhex(provider.removeprefix("0x"))
    if len(address) != 20:
        raise ValueError(f"A provider is a 20-byte address, not {provider!r}.")
    return address[:16] + uuid.UUID(str(dataset_id)).bytes


def result_commitment(released: Any, salt: bytes) -> bytes:
    """sha256(salt || canonical JSON of what was released): what ``settle`` pins on chain."""
    return hashlib.sha256(salt + canonical_json(released)).digest()


def hex32(value: bytes) -> str:
    return "0x" + value.hex()


def unhex(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))
