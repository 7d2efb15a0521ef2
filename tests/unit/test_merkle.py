"""The Merkle tree behind settleBatch, in Python: the same tree contracts/test/Merkle.sol builds
and OpenZeppelin's MerkleProof verifies (sorted pairs, an odd last node moved up unchanged).
tests/integration/test_settle_batch.py checks these roots and proofs with the contract itself."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from dataspace.chain.merkle import merkle_proofs, merkle_root, merkle_verify, receipt_leaf

pytestmark = pytest.mark.smoke
words = st.binary(min_size=32, max_size=32)


def pair(a: bytes, b: bytes) -> bytes:
    return keccak(min(a, b) + max(a, b))


def test_receipt_leaf_is_keccak_of_the_abi_encoded_triple() -> None:
    job, result, attestation = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    assert receipt_leaf(job, result, attestation) == keccak(job + result + attestation)
    with pytest.raises(ValueError):
        receipt_leaf(b"\x01" * 31, result, attestation)


def test_one_leaf_is_its_own_root_with_an_empty_proof() -> None:
    leaf = keccak(b"only")
    assert merkle_root([leaf]) == leaf
    assert merkle_proofs([leaf]) == [[]]
    assert merkle_verify(leaf, [], leaf)


def test_three_leaves_hash_sorted_pairs_and_lift_the_odd_one() -> None:
    a, b, c = (keccak(bytes([i])) for i in range(3))
    assert merkle_root([a, b, c]) == pair(pair(a, b), c)
    assert merkle_proofs([a, b, c]) == [[b, c], [a, c], [pair(a, b)]]


def test_no_leaves_is_refused() -> None:
    with pytest.raises(ValueError):
        merkle_root([])
    with pytest.raises(ValueError):
        merkle_proofs([])


@settings(max_examples=200, deadline=None)
@given(st.lists(words, min_size=1, max_size=70, unique=True), st.data())
def test_every_proof_leads_to_the_root_and_no_other_leaf_does(leaves: list[bytes], data: st.DataObject) -> None:
    root = merkle_root(leaves)
    proofs = merkle_proofs(leaves)
    for leaf, proof in zip(leaves, proofs, strict=True):
        assert merkle_verify(leaf, proof, root)
    i = data.draw(st.integers(0, len(leaves) - 1))
    stranger = data.draw(words.filter(lambda w: w not in leaves))
    assert not merkle_verify(stranger, proofs[i], root)
    if len(leaves) > 1:
        j = data.draw(st.integers(0, len(leaves) - 1).filter(lambda j: leaves[j] != leaves[i]))
        # Another job's leaf with this job's proof: refused unless they share every sibling (never
        # for distinct leaves whose paths differ at the bottom level).
        if proofs[i] != proofs[j]:
            assert not merkle_verify(leaves[j], proofs[i], root)
        forged = [bytes(32), *proofs[i][1:]]
        assert not merkle_verify(leaves[i], forged, root)
