// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title JobCells
/// @notice Packs the record of a job into 32 bits, eight jobs to a storage word.
/// @dev A job id is `(agreementId << 128) | nonce`. Its cell lives in the word keyed by
///      `uint256(jobId) >> 3`, at bit offset `(jobId & 7) * 32`; consecutive nonces of one
///      agreement share words. A cell holds the status in its top two bits (0 none, 1 recorded,
///      2 settled, 3 refunded) and the privacy loss the job spent in its low 30 bits: at most
///      LOSS_MASK = 2^30 - 1 nano-rho, about 1.0737 rho, which bounds one job above 1.0 rho.
library JobCells {
    uint256 internal constant NONE = 0;
    uint256 internal constant RECORDED = 1;
    uint256 internal constant SETTLED = 2;
    uint256 internal constant REFUNDED = 3;
    uint256 internal constant LOSS_MASK = (1 << 30) - 1;

    /// @dev The storage key of the word holding the job's cell.
    function wordKey(bytes32 jobId) internal pure returns (uint256) {
        return uint256(jobId) >> 3;
    }

    function _offset(bytes32 jobId) private pure returns (uint256) {
        return (uint256(jobId) & 7) << 5;
    }

    /// @dev The job's status in `word`.
    function status(uint256 word, bytes32 jobId) internal pure returns (uint256) {
        return (word >> (_offset(jobId) + 30)) & 3;
    }

    /// @dev The privacy loss recorded for the job in `word`.
    function privacyLoss(uint256 word, bytes32 jobId) internal pure returns (uint64) {
        return uint64((word >> _offset(jobId)) & LOSS_MASK);
    }

    /// @dev `word` with the job's (empty) cell set to recorded with `loss` (<= LOSS_MASK).
    function record(uint256 word, bytes32 jobId, uint64 loss) internal pure returns (uint256) {
        return word | (((RECORDED << 30) | loss) << _offset(jobId));
    }

    /// @dev `word` with the job's recorded cell moved to `to` (settled or refunded), loss kept.
    function close(uint256 word, bytes32 jobId, uint256 to) internal pure returns (uint256) {
        return word ^ ((RECORDED ^ to) << (_offset(jobId) + 30));
    }
}
