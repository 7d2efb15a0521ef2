// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {StdInvariant} from "forge-std/StdInvariant.sol";
import {Test} from "forge-std/Test.sol";

import {DevToken} from "../src/DevToken.sol";
import {UsageAgreements} from "../src/UsageAgreements.sol";
import {Fixture} from "./Fixture.sol";

/// Drives random sequences of accept / record / settle / refund / withdraw / reclaim / time.
contract UsageHandler is Test {
    UsageAgreements internal usage;
    DevToken internal token;
    address internal consumer;
    uint256 internal consumerKey;
    address internal provider;
    address internal operator;
    uint256 internal offerId;
    bytes32 internal purpose;
    bytes32 internal operation;

    uint256[] public agreements;
    bytes32[] public openJobs;
    mapping(bytes32 => uint256) public timesRecorded;
    uint256 public settledWithoutRecord;

    constructor(UsageAgreements usage_, DevToken token_, uint256 consumerKey_, address provider_, address operator_, uint256 offerId_, bytes32 purpose_, bytes32 operation_) {
        usage = usage_;
        token = token_;
        consumerKey = consumerKey_;
        consumer = vm.addr(consumerKey_);
        provider = provider_;
        operator = operator_;
        offerId = offerId_;
        purpose = purpose_;
        operation = operation_;
    }

    function accept(uint32 calls) external {
        calls = uint32(bound(calls, 1, 20));
        vm.prank(consumer);
        agreements.push(usage.acceptOffer(offerId, calls));
    }

    function record(uint256 agreementSeed, uint128 nonce, uint64 epsilon) external {
        if (agreements.length == 0) return;
        uint256 agreementId = agreements[agreementSeed % agreements.length];
        bytes32 jobId = usage.jobIdOf(agreementId, nonce % 600);
        epsilon = uint64(bound(epsilon, 0, 2e6));
        (, uint256 n) = usage.splitJobId(jobId);
        bytes32 digest = keccak256(abi.encodePacked(
            "\x19\x01", usage.domainSeparator(),
            keccak256(abi.encode(usage.USAGE_TYPEHASH(), agreementId, jobId, purpose, operation, epsilon, n, block.timestamp))
        ));  // forgefmt: disable-line
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(consumerKey, digest);
        vm.prank(operator);
        try usage.recordUsage(agreementId, jobId, purpose, operation, epsilon, block.timestamp, abi.encodePacked(r, s, v)) {
            timesRecorded[jobId] += 1;
            openJobs.push(jobId);
        } catch {}
    }

    function settle(uint256 seed) external {
        if (openJobs.length == 0) return;
        bytes32 jobId = _takeOpen(seed);
        if (timesRecorded[jobId] == 0) settledWithoutRecord += 1;
        vm.prank(operator);
        usage.settle(jobId, keccak256(abi.encode(jobId)), bytes32(0));
    }

    function settleMany(uint256 seed, uint8 count) external {
        uint256 n = bound(count, 1, 8);
        if (openJobs.length < n) return;
        bytes32[] memory jobs = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            jobs[i] = _takeOpen(seed + i);
        }
        vm.prank(operator);
        usage.settleBatch(keccak256(abi.encode(jobs)), jobs);
    }

    function refund(uint256 seed) external {
        if (openJobs.length == 0) return;
        bytes32 jobId = _takeOpen(seed);
        vm.prank(operator);
        usage.refund(jobId, "test");
    }

    function settleUnrecorded(uint256 agreementSeed, uint128 nonce) external {
        if (agreements.length == 0) return;
        bytes32 jobId = usage.jobIdOf(agreements[agreementSeed % agreements.length], nonce);
        vm.prank(operator);
        try usage.settle(jobId, bytes32(0), bytes32(0)) {
            if (timesRecorded[jobId] == 0) settledWithoutRecord += 1;
        } catch {}
    }

    function withdraw() external {
        if (usage.balanceOf(provider) == 0) return;
        vm.prank(provider);
        usage.withdraw();
    }

    function reclaim(uint256 seed) external {
        if (agreements.length == 0) return;
        uint256 agreementId = agreements[seed % agreements.length];
        vm.prank(consumer);
        try usage.reclaim(agreementId) {} catch {}
    }

    function passTime(uint32 secondsAhead) external {
        vm.warp(block.timestamp + bound(secondsAhead, 1, 10 days));
    }

    function agreementCount() external view returns (uint256) {
        return agreements.length;
    }

    function _takeOpen(uint256 seed) internal returns (bytes32 jobId) {
        uint256 index = seed % openJobs.length;
        jobId = openJobs[index];
        openJobs[index] = openJobs[openJobs.length - 1];
        openJobs.pop();
    }
}

contract UsageInvariants is StdInvariant, Fixture {
    UsageHandler internal handler;

    function setUp() public override {
        super.setUp();
        handler = new UsageHandler(usage, token, consumerKey, provider, operator, offerId, RESEARCH, MEAN);
        vm.prank(consumer);
        token.approve(address(usage), 0);
        // The handler acts as the consumer through pranks; the consumer's approval stays.
        vm.prank(consumer);
        token.approve(address(usage), type(uint256).max);
        targetContract(address(handler));
    }

    /// escrow + pending + provider balances + paid out == deposited, and the tokens are there.
    function invariant_escrowConserved() public view {
        uint256 escrow;
        uint256 pending;
        for (uint256 i; i < handler.agreementCount(); ++i) {
            UsageAgreements.Agreement memory a = usage.getAgreement(handler.agreements(i));
            escrow += a.escrow;
            pending += uint256(a.openCalls) * a.pricePerCall;
        }
        uint256 accounted = escrow + pending + usage.balanceOf(provider) + usage.totalPaidOut();
        assertEq(accounted, usage.totalDeposited());
        assertEq(token.balanceOf(address(usage)), escrow + pending + usage.balanceOf(provider));
    }

    function invariant_callsNeverExceedBought() public view {
        for (uint256 i; i < handler.agreementCount(); ++i) {
            UsageAgreements.Agreement memory a = usage.getAgreement(handler.agreements(i));
            assertLe(a.callsUsed, a.callsBought);
            assertLe(a.openCalls, a.callsUsed);
            assertLe(a.budgetUsed, a.privacyBudget);
        }
    }

    function invariant_noSettleWithoutRecord() public view {
        assertEq(handler.settledWithoutRecord(), 0);
    }

    function invariant_jobRecordedAtMostOnce() public view {
        for (uint256 i; i < handler.agreementCount(); ++i) {
            uint256 agreementId = handler.agreements(i);
            for (uint256 nonce; nonce < 600; nonce += 37) {
                assertLe(handler.timesRecorded(usage.jobIdOf(agreementId, nonce)), 1);
            }
        }
    }
}
