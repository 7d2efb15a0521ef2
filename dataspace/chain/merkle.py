"""Receipt leaves and the Merkle tree ``UsageAgreements.settleBatch`` commits to.

The contract checks inclusion with OpenZeppelin's ``MerkleProof``: a proof is the list of
siblings from the leaf up, and each step hashes the pair *sorted* (the smaller word first), so a
proof carries no left/right flags. The tree here is the one ``contracts/test/Merkle.sol`` builds
and the explorer's ``merkleProof`` reads: each level hashes neighbours two by two and an odd last
node moves up unchanged (its proof skips that level). A leaf is ``receiptLeaf(jobId, resultHash,
attestationHash) = keccak256(abi.encode(...))``; three static ``bytes32`` encode as their
concatenation.
"""

from __future__ import annotations

from eth_utils.crypto import keccak

WORD = 32


def _word(value: bytes) -> bytes:
    if len(value) != WORD:
        raise ValueError(f"a Merkle word is {WORD} bytes, not {len(value)}")
    return bytes(value)


def receipt_leaf(job_id: bytes, result_hash: bytes, attestation_hash: bytes) -> bytes:
    """What ``receiptLeaf`` returns on chain for a job's settlement."""
    return keccak(_word(job_id) + _word(result_hash) + _word(attestation_hash))


def _parent(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


def _up(level: list[bytes]) -> list[bytes]:
    return [_parent(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]


def merkle_root(leaves: list[bytes]) -> bytes:
    """The root over ``leaves`` in their order (a single leaf is its own root)."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    level = [_word(leaf) for leaf in leaves]
    while len(level) > 1:
        level = _up(level)
    return level[0]


def merkle_proofs(leaves: list[bytes]) -> list[list[bytes]]:
    """The proof of every leaf, in the leaves' order, built in one pass over the tree."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    level = [_word(leaf) for leaf in leaves]
    proofs: list[list[bytes]] = [[] for _ in leaves]
    positions = list(range(len(leaves)))  # where each leaf's ancestor sits in the current level
    while len(level) > 1:
        for leaf, index in enumerate(positions):
            sibling = index ^ 1
            if sibling < len(level):
                proofs[leaf].append(level[sibling])
        level = _up(level)
        positions = [index // 2 for index in positions]
    return proofs


def merkle_verify(leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    """What ``MerkleProof.verify`` answers: the leaf and its proof lead to ``root``."""
    node = _word(leaf)
    for sibling in proof:
        node = _parent(node, _word(sibling))
    return node == root
