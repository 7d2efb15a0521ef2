// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {StdInvariant} from "forge-std/StdInvariant.sol";
import {Test} from "forge-std/Test.sol";

import {DevToken} from "../src/DevToken.sol";
import {IUsageAgreements} from "../src/IUsageAgreements.sol";
import {Fixture} from "./Fixture.sol";

/// Drives accept / record / settleMetered / refund / withdraw (both sides) / reclaim / time over
/// a metered offer, and tries the unmetered settlement paths, which must always refuse.
contract MeteredHandler is Test {
    IUsageAgreements internal usage;
    uint256 internal consumerKey;
    address public consumer;
    address public provider;
    address internal operator;
    uint256 internal offerId;
    bytes32 internal purpose;
    bytes32 internal operation;

    uint256[] public agreements;
    bytes32[] internal openJobs;
    mapping(uint256 agreementId => uint256) internal nextNonce;
    uint256 public ghostDeposited;
    uint256 public ghostCharged;
    uint256 public ghostReturned;
    uint256 public unmeteredSettlementsAccepted;

    constructor(
        IUsageAgreements usage_,
        uint256 consumerKey_,
        address provider_,
        address operator_,
        uint256 offerId_,
        bytes32 purpose_,
        bytes32 operation_
    ) {
        usage = usage_;
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
        uint256 agreementId = usage.acceptOffer(offerId, calls);
        agreements.push(agreementId);
        ghostDeposited += calls * usage.getAgreement(agreementId).pricePerCall;
    }

    function record(uint256 seed) external {
        if (agreements.length == 0) return;
        uint256 agreementId = agreements[seed % agreements.length];
        uint256 nonce = nextNonce[agreementId];
        bytes32 jobId = usage.jobIdOf(agreementId, nonce);
        bytes32 paramsHash = keccak256(abi.encode(jobId));
        bytes32 structHash = keccak256(
            abi.encode(
                usage.USAGE_TYPEHASH(), agreementId, jobId, purpose, operation, paramsHash, uint64(0), nonce, block.timestamp
            )
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", usage.domainSeparator(), structHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(consumerKey, digest);
        vm.prank(operator);
        try usage.recordUsage(agreementId, jobId, purpose, operation, paramsHash, 0, block.timestamp, abi.encodePacked(r, s, v)) {
            nextNonce[agreementId] = nonce + 1;
            openJobs.push(jobId);
        } catch {}
    }

    function settleMetered(uint256 seed, uint64 cpuMillis) external {
        if (openJobs.length == 0) return;
        bytes32 jobId = _takeOpen(seed);
        uint256 providerBefore = usage.withdrawable(provider);
        uint256 consumerBefore = usage.withdrawable(consumer);
        vm.prank(operator);
        usage.settleMetered(jobId, keccak256(abi.encode(jobId)), bytes32(0), IUsageAgreements.Metering(cpuMillis, 0, 0));
        ghostCharged += usage.withdrawable(provider) - providerBefore;
        ghostReturned += usage.withdrawable(consumer) - consumerBefore;
    }

    /// settle and settleBatch on an open metered job: both must refuse.
    function settleUnmetered(uint256 seed, bool batch) external {
        if (openJobs.length == 0) return;
        bytes32 jobId = openJobs[seed % openJobs.length];
        bytes32[] memory jobs = new bytes32[](1);
        jobs[0] = jobId;
        vm.startPrank(operator);
        if (batch) {
            try usage.settleBatch(keccak256("root"), jobs) {
                unmeteredSettlementsAccepted += 1;
            } catch {}
        } else {
            try usage.settle(jobId, bytes32(0), bytes32(0)) {
                unmeteredSettlementsAccepted += 1;
            } catch {}
        }
        vm.stopPrank();
    }

    function refund(uint256 seed) external {
        if (openJobs.length == 0) return;
        bytes32 jobId = _takeOpen(seed);
        vm.prank(operator);
        usage.refund(jobId, "invariant");
    }

    function withdraw(bool asConsumer) external {
        address who = asConsumer ? consumer : provider;
        if (usage.withdrawable(who) == 0) return;
        vm.prank(who);
        usage.withdraw();
    }

    function reclaim(uint256 seed) external {
        if (agreements.length == 0) return;
        vm.prank(consumer);
        try usage.reclaim(agreements[seed % agreements.length]) {} catch {}
    }

    function passTime(uint32 secondsAhead) external {
        vm.warp(block.timestamp + bound(secondsAhead, 1, 3 days));
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

contract MeteringInvariants is StdInvariant, Fixture {
    MeteredHandler internal handler;

    function setUp() public override {
        super.setUp();
        vm.prank(provider);
        uint256 metered =
            usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), 50, PRICE, 7 days, CONSUMER_LIMIT, 3e18, 10_000);
        handler = new MeteredHandler(usage, consumerKey, provider, operator, metered, RESEARCH, MEAN);
        targetContract(address(handler));
    }

    /// escrow + pending + both withdrawable balances + paid out == deposited, and the tokens are
    /// there: metering splits money, it never makes or loses any.
    function invariant_meteredMoneyConserved() public view {
        uint256 escrow;
        uint256 pending;
        for (uint256 i; i < handler.agreementCount(); ++i) {
            IUsageAgreements.Agreement memory a = usage.getAgreement(handler.agreements(i));
            escrow += a.escrow;
            pending += a.pending;
        }
        uint256 balances = usage.withdrawable(handler.provider()) + usage.withdrawable(handler.consumer());
        assertEq(escrow + pending + balances + usage.totalPaidOut(), usage.totalDeposited(), "conservation");
        assertEq(usage.totalDeposited(), handler.ghostDeposited(), "deposits");
        assertEq(token.balanceOf(address(usage)), escrow + pending + balances, "tokens held");
    }

    /// Every settled call paid at least the price and at most its maximum, split exactly.
    function invariant_chargesWithinTheirBounds() public view {
        uint256 settled;
        for (uint256 i; i < handler.agreementCount(); ++i) {
            settled += usage.getAgreement(handler.agreements(i)).callsSettled;
        }
        uint256 maxPerCall = uint256(PRICE) + 3e18 * 10;
        assertEq(handler.ghostCharged() + handler.ghostReturned(), settled * maxPerCall, "split exactly");
        assertGe(handler.ghostCharged(), settled * PRICE, "at least the price");
    }

    /// A metered job never settles through settle or settleBatch.
    function invariant_meteredJobsSettleOnlyMetered() public view {
        assertEq(handler.unmeteredSettlementsAccepted(), 0);
    }
}
