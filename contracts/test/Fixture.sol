// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "forge-std/Test.sol";

import {DatasetRegistry} from "../src/DatasetRegistry.sol";
import {DevToken} from "../src/DevToken.sol";
import {IUsageAgreements} from "../src/IUsageAgreements.sol";

/// Deployed contracts, one registered dataset with a privacy limit, one offer and helpers to sign
/// as the consumer. Privacy losses are nano-rho (1e9 = 1.0 rho).
abstract contract Fixture is Test {
    DevToken internal token;
    DatasetRegistry internal registry;
    IUsageAgreements internal usage;

    address internal admin = makeAddr("admin");
    address internal operator = makeAddr("operator");
    uint256 internal providerKey = 0xA11CE;
    uint256 internal consumerKey = 0xB0B;
    address internal provider;
    address internal consumer;

    // The provider's dataset: its id carries the provider's address prefix (set in setUp).
    bytes32 internal DATASET;
    bytes32 internal constant RESEARCH = keccak256("research");
    bytes32 internal constant MARKETING = keccak256("marketing");
    bytes32 internal constant MEAN = keccak256("mean");
    bytes32 internal constant EXPORT = keccak256("export");
    bytes32 internal constant POLICY = keccak256("policy");
    uint96 internal constant PRICE = 5e18;
    uint32 internal constant MAX_CALLS = 1_000;
    uint64 internal constant DURATION = 30 days;
    uint64 internal constant LIMIT = 10e9; // the dataset's budget: rho 10.0
    uint64 internal constant CONSUMER_LIMIT = 2e9; // the offer's limit per consumer: rho 2.0
    uint64 internal constant LOSS = 1e7; // rho 0.01 per job
    // The platform's params hash: SHA-256 of the canonical JSON {"column":"age"} (a literal: a
    // constant sha256(...) would call the precompile at each use and eat a pending vm.prank).
    bytes32 internal constant PARAMS = 0x5a3307d7c6ff615c7a414b0341644109f554c3e6f9f42aea6242e5ae22f0acfe;

    uint256 internal offerId;

    function setUp() public virtual {
        provider = vm.addr(providerKey);
        consumer = vm.addr(consumerKey);
        DATASET = _datasetIdOf(provider, bytes16(keccak256("dataset-1")));
        token = new DevToken(admin);
        registry = new DatasetRegistry(admin, operator);
        // Deployed from its artifact: UsageAgreements is compiled alone through the IR pipeline.
        usage = IUsageAgreements(
            deployCode("UsageAgreements.sol:UsageAgreements", abi.encode(address(token), address(registry), admin, operator))
        );
        vm.prank(provider);
        registry.register(DATASET, keccak256("meta"), keccak256("content"));
        vm.prank(provider);
        usage.setDatasetPrivacyLimit(DATASET, LIMIT);
        offerId = _publish(provider, DATASET);
        _fund(consumer);
    }

    /// A dataset id bound to `who`: its address's first 16 bytes, then a local part (the
    /// platform puts the dataset's UUID there).
    function _datasetIdOf(address who, bytes16 local) internal pure returns (bytes32) {
        return bytes32(bytes16(bytes20(who))) | bytes32(uint256(uint128(local)));
    }

    function _fund(address who) internal {
        vm.prank(admin);
        token.mint(who, 1_000_000_000e18);
        vm.prank(who);
        token.approve(address(usage), type(uint256).max);
    }

    function _one(bytes32 value) internal pure returns (bytes32[] memory list) {
        list = new bytes32[](1);
        list[0] = value;
    }

    function _publish(address who, bytes32 datasetId) internal returns (uint256) {
        vm.prank(who);
        return usage.publishOffer(datasetId, POLICY, _one(RESEARCH), _one(MEAN), MAX_CALLS, PRICE, DURATION, CONSUMER_LIMIT, 0, 0);
    }

    function _accept(uint32 calls) internal returns (uint256 agreementId) {
        vm.prank(consumer);
        agreementId = usage.acceptOffer(offerId, calls);
    }

    function _sign(
        uint256 key,
        uint256 agreementId,
        bytes32 jobId,
        bytes32 purpose,
        bytes32 operation,
        bytes32 paramsHash,
        uint64 privacyLoss,
        uint256 deadline
    ) internal view returns (bytes memory) {
        bytes32 digest = _usageDigest(agreementId, jobId, purpose, operation, paramsHash, privacyLoss, deadline);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    /// The EIP-712 digest of a Usage message, built independently of the contract's code. Its
    /// struct is encoded in two halves (static words concatenate) to stay within the stack.
    function _usageDigest(
        uint256 agreementId,
        bytes32 jobId,
        bytes32 purpose,
        bytes32 operation,
        bytes32 paramsHash,
        uint64 privacyLoss,
        uint256 deadline
    ) internal view returns (bytes32) {
        bytes memory head = abi.encode(usage.USAGE_TYPEHASH(), agreementId, jobId, purpose, operation);
        bytes memory tail = abi.encode(paramsHash, privacyLoss, uint256(uint128(uint256(jobId))), deadline);
        bytes32 structHash = keccak256(bytes.concat(head, tail));
        return keccak256(abi.encodePacked("\x19\x01", usage.domainSeparator(), structHash));
    }

    function _recordAs(uint256 key, uint256 agreementId, uint256 nonce, uint64 privacyLoss)
        internal
        returns (bytes32 jobId)
    {
        jobId = usage.jobIdOf(agreementId, nonce);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory sig = _sign(key, agreementId, jobId, RESEARCH, MEAN, PARAMS, privacyLoss, deadline);
        vm.prank(operator);
        usage.recordUsage(agreementId, jobId, RESEARCH, MEAN, PARAMS, privacyLoss, deadline, sig);
    }

    function _record(uint256 agreementId, uint256 nonce) internal returns (bytes32) {
        return _recordAs(consumerKey, agreementId, nonce, LOSS);
    }

    function _datasetUsed(bytes32 datasetId) internal view returns (uint64 used) {
        (, used,,) = usage.getDatasetPrivacy(datasetId);
    }

    function _settle(bytes32 jobId) internal {
        vm.prank(operator);
        usage.settle(jobId, keccak256(abi.encode("result", jobId)), keccak256(abi.encode("attestation", jobId)));
    }
}
