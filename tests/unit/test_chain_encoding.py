"""The values the platform writes on chain: privacy loss in nano-rho, the signed parameters' hash.

Both are recomputed by auditors and by consumers who sign their own requests, so their byte form
is pinned here."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import pytest

from dataspace.chain.encoding import UINT64_MAX, params_hash, rho_nano

pytestmark = pytest.mark.smoke

FIXTURE = Path(__file__).resolve().parents[2] / "contracts" / "test" / "Fixture.sol"


@pytest.mark.parametrize(
    ("rho", "nano"),
    [
        (0.0, 0),
        (-0.0, 0),
        (1.0, 10**9),
        (0.1, 10**8),
        (0.125, 125_000_000),
        (1.2e-9, 1),  # to the nearest billionth
        (0.4e-9, 0),
        (0.6e-9, 1),
        (2, 2 * 10**9),
    ],
)
def test_rho_nano_counts_billionths_to_the_nearest(rho: float, nano: int) -> None:
    assert rho_nano(rho) == nano


@pytest.mark.parametrize("rho", [-1e-12, -1.0, math.nan, math.inf, -math.inf, (UINT64_MAX + 1) / 1e9 * 1.001])
def test_rho_nano_refuses_what_is_no_uint64_loss(rho: float) -> None:
    with pytest.raises(ValueError):
        rho_nano(rho)


def test_params_hash_is_sha256_of_canonical_json() -> None:
    params = {"where": {"equals": "north", "column": "region"}, "by": "clinic"}
    reordered = {"by": "clinic", "where": {"column": "region", "equals": "north"}}
    expected = hashlib.sha256(b'{"by":"clinic","where":{"column":"region","equals":"north"}}').digest()
    assert params_hash(params) == params_hash(reordered) == expected
    assert params_hash({}) == hashlib.sha256(b"{}").digest()
    assert params_hash({"column": "âge"}) == hashlib.sha256('{"column":"âge"}'.encode()).digest()


def test_params_hash_matches_the_contract_tests_constant() -> None:
    """The Foundry fixture signs the platform's hash of {"column": "age"} as a literal."""
    found = re.search(r"bytes32 internal constant PARAMS = 0x([0-9a-f]{64});", FIXTURE.read_text())
    assert found is not None
    assert params_hash({"column": "age"}).hex() == found.group(1)


def test_dataset_chain_id_carries_its_provider_prefix_and_uuid() -> None:
    import uuid

    from dataspace.chain.encoding import dataset_chain_id, dataset_uuid

    dataset = uuid.uuid4()
    provider = "0x" + "ab" * 18 + "cdef"
    chain_id = dataset_chain_id(dataset, provider=provider)
    assert len(chain_id) == 32
    assert chain_id[:16] == bytes.fromhex("ab" * 16)  # DatasetRegistry.isBoundTo compares these
    assert dataset_uuid(chain_id) == dataset
    assert dataset_chain_id(dataset, provider="0x" + "01" * 20) != chain_id
    with pytest.raises(ValueError, match="20-byte address"):
        dataset_chain_id(dataset, provider="0x1234")
