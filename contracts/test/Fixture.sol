// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "forge-std/Test.sol";

import {DatasetRegistry} from "../src/DatasetRegistry.sol";
import {DevToken} from "../src/DevToken.sol";
import {UsageAgreements} from "../src/UsageAgreements.sol";

/// Deployed contracts, one registered dataset, one offer and helpers to sign as the consumer.
abstract contract Fixture is Test {
    DevToken internal token;
    DatasetRegistry internal registry;
    UsageAgreements internal usage;

    address internal admin = makeAddr("admin");
    address internal operator = makeAddr("operator");
    uint256 internal providerKey = 0xA11CE;
    uint256 internal consumerKey = 0xB0B;
    address internal provider;
    address internal consumer;

    bytes32 internal constant DATASET = keccak256("dataset-1");
    bytes32 internal constant RESEARCH = keccak256("research");
    bytes32 internal constant MARKETING = keccak256("marketing");
    bytes32 internal constant MEAN = keccak256("mean");
    bytes32 internal constant EXPORT = keccak256("export");
    uint128 internal constant PRICE = 5e18;
    uint32 internal constant MAX_CALLS = 1_000;
    uint64 internal constant DURATION = 30 days;
    uint64 internal constant BUDGET = 10e6; // epsilon 10.0

    uint256 internal offerId;

    function setUp() public virtual {
        provider = vm.addr(providerKey);
        consumer = vm.addr(consumerKey);
        token = new DevToken(admin);
        registry = new DatasetRegistry(admin, operator);
        usage = new UsageAgreements(token, registry, admin, operator);
        vm.prank(provider);
        registry.register(DATASET, keccak256("meta"), keccak256("content"));
        offerId = _publish(provider, DATASET);
        vm.prank(admin);
        token.mint(consumer, 1_000_000e18);
        vm.prank(consumer);
        token.approve(address(usage), type(uint256).max);
    }

    function _publish(address who, bytes32 datasetId) internal returns (uint256) {
        bytes32[] memory purposes = new bytes32[](1);
        purposes[0] = RESEARCH;
        bytes32[] memory operations = new bytes32[](1);
        operations[0] = MEAN;
        vm.prank(who);
        return usage.publishOffer(datasetId, keccak256("policy"), purposes, operations, MAX_CALLS, PRICE, DURATION, BUDGET);
    }

    function _accept(uint32 calls) internal returns (uint256 agreementId) {
        vm.prank(consumer);
        agreementId = usage.acceptOffer(offerId, calls);
    }

    function _sign(uint256 key, uint256 agreementId, bytes32 jobId, bytes32 purpose, bytes32 operation, uint64 epsilon, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        (, uint256 nonce) = usage.splitJobId(jobId);
        bytes32 structHash = keccak256(
            abi.encode(usage.USAGE_TYPEHASH(), agreementId, jobId, purpose, operation, epsilon, nonce, deadline)
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", usage.domainSeparator(), structHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function _record(uint256 agreementId, uint256 nonce) internal returns (bytes32 jobId) {
        jobId = usage.jobIdOf(agreementId, nonce);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory sig = _sign(consumerKey, agreementId, jobId, RESEARCH, MEAN, 1e5, deadline);
        vm.prank(operator);
        usage.recordUsage(agreementId, jobId, RESEARCH, MEAN, 1e5, deadline, sig);
    }
}
