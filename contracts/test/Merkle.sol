// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// A Merkle tree over sorted pairs, as OpenZeppelin's MerkleProof verifies: each level hashes
/// neighbours two by two; an odd last node moves up unchanged (its proof skips that level).
library Merkle {
    function _parent(bytes32 a, bytes32 b) private pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    function _up(bytes32[] memory level) private pure returns (bytes32[] memory next) {
        next = new bytes32[]((level.length + 1) / 2);
        for (uint256 i; i < next.length; ++i) {
            next[i] = 2 * i + 1 < level.length ? _parent(level[2 * i], level[2 * i + 1]) : level[2 * i];
        }
    }

    function root(bytes32[] memory leaves) internal pure returns (bytes32) {
        bytes32[] memory level = leaves;
        while (level.length > 1) {
            level = _up(level);
        }
        return level[0];
    }

    function proof(bytes32[] memory leaves, uint256 index) internal pure returns (bytes32[] memory path) {
        bytes32[] memory siblings = new bytes32[](256);
        uint256 depth;
        bytes32[] memory level = leaves;
        while (level.length > 1) {
            uint256 sibling = index ^ 1;
            if (sibling < level.length) siblings[depth++] = level[sibling];
            level = _up(level);
            index /= 2;
        }
        path = new bytes32[](depth);
        for (uint256 i; i < depth; ++i) {
            path[i] = siblings[i];
        }
    }
}
