// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {StdInvariant} from "forge-std/StdInvariant.sol";
import {Test} from "forge-std/Test.sol";

import {DevToken} from "../src/DevToken.sol";
import {IUsageAgreements} from "../src/IUsageAgreements.sol";
import {Fixture} from "./Fixture.sol";

/// Drives random sequences of accept / record / settle / settleBatch / refund / suspend /
/// withdraw / reclaim / time / dataset limit changes over two datasets, keeping its own (ghost)
/// account of what should be true.
contract UsageHandler is Test {
    IUsageAgreements internal usage;
    DevToken internal token;
    uint256 internal consumerKey;
    address internal consumer;
    address internal provider;
    address internal operator;
    uint256[2] internal offers;
    bytes32[2] public datasets;
    bytes32 internal purpose;
    bytes32 internal operation;
    uint256 internal price;

    uint256[] public agreements;
    bytes32[] internal openJobs;
    mapping(uint256 agreementId => uint256) public nextNonce;
    mapping(uint256 agreementId => bytes32) internal datasetOf;
    mapping(bytes32 datasetId => uint256) public ghostUsed;
    mapping(bytes32 jobId => uint256) public timesRecorded;
    mapping(bytes32 jobId => uint64) internal lossOf;
    uint256 public ghostDeposited;
    uint256 public doubleRecords;
    uint256 public closedWithoutOpenRecord;
    uint256 public recorded;
    uint256 public limitsBelowUsedAccepted;
    uint256 public budgetRefusals; // how often a dataset's budget refused a use (the runs reach it)

    constructor(
        IUsageAgreements usage_,
        DevToken token_,
        uint256 consumerKey_,
        address provider_,
        address operator_,
        uint256[2] memory offers_,
        bytes32 purpose_,
        bytes32 operation_
    ) {
        usage = usage_;
        token = token_;
        consumerKey = consumerKey_;
        consumer = vm.addr(consumerKey_);
        provider = provider_;
        operator = operator_;
        offers = offers_;
        purpose = purpose_;
        operation = operation_;
        price = usage_.getOffer(offers_[0]).pricePerCall;
        require(usage_.getOffer(offers_[1]).pricePerCall == price, "one price for every offer");
        datasets = [usage_.getOffer(offers_[0]).datasetId, usage_.getOffer(offers_[1]).datasetId];
    }

    function accept(uint32 calls, bool second) external {
        calls = uint32(bound(calls, 1, 50));
        uint256 which = second ? 1 : 0;
        vm.prank(consumer);
        uint256 agreementId = usage.acceptOffer(offers[which], calls);
        agreements.push(agreementId);
        datasetOf[agreementId] = datasets[which];
        ghostDeposited += calls * price;
    }

    /// Records several jobs in a row (fresh nonces), as a busy agreement would.
    function recordMany(uint256 agreementSeed, uint8 count, uint64 loss) external {
        uint256 n = bound(count, 1, 8);
        for (uint256 i; i < n; ++i) {
            record(agreementSeed, 1, loss);
        }
    }

    /// Records with the next fresh nonce, or (one time in four) tries a nonce that may be used.
    /// Losses up to 0.4 rho, so the datasets' limits are reached within a run.
    function record(uint256 agreementSeed, uint256 nonceSeed, uint64 loss) public {
        if (agreements.length == 0) return;
        uint256 agreementId = agreements[agreementSeed % agreements.length];
        uint256 nonce = nonceSeed % 4 == 0 ? nonceSeed % (nextNonce[agreementId] + 1) : nextNonce[agreementId];
        bytes32 jobId = usage.jobIdOf(agreementId, nonce);
        loss = uint64(bound(loss, 0, 4e8));
        bytes32 paramsHash = keccak256(abi.encode("params", jobId));
        bytes32 digest = keccak256(
            abi.encodePacked(
                "\x19\x01",
                usage.domainSeparator(),
                keccak256(
                    abi.encode(
                        usage.USAGE_TYPEHASH(),
                        agreementId,
                        jobId,
                        purpose,
                        operation,
                        paramsHash,
                        loss,
                        nonce,
                        block.timestamp
                    )
                )
            )
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(consumerKey, digest);
        vm.prank(operator);
        try usage.recordUsage(
            agreementId, jobId, purpose, operation, paramsHash, loss, block.timestamp, abi.encodePacked(r, s, v)
        ) {
            if (timesRecorded[jobId]++ != 0) doubleRecords += 1;
            if (nonce == nextNonce[agreementId]) nextNonce[agreementId] += 1;
            lossOf[jobId] = loss;
            ghostUsed[datasetOf[agreementId]] += loss;
            openJobs.push(jobId);
            recorded += 1;
        } catch (bytes memory reason) {
            if (bytes4(reason) == IUsageAgreements.DatasetBudgetExhausted.selector) budgetRefusals += 1;
        }
    }

    function settle(uint256 seed) external {
        if (openJobs.length == 0) return;
        bytes32 jobId = _takeOpen(seed);
        vm.prank(operator);
        usage.settle(jobId, keccak256(abi.encode(jobId)), bytes32(0));
    }

    function settleMany(uint256 seed, uint8 count) external {
        uint256 n = bound(count, 1, 8);
        if (openJobs.length < n) return;
        bytes32[] memory jobs = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            jobs[i] = _takeOpen(uint256(keccak256(abi.encode(seed, i))));
        }
        vm.prank(operator);
        usage.settleBatch(keccak256(abi.encode(jobs)), jobs);
    }

    function refund(uint256 seed) external {
        if (openJobs.length == 0) return;
        bytes32 jobId = _takeOpen(seed);
        vm.prank(operator);
        usage.refund(jobId, "invariant");
        ghostUsed[datasetOf[uint256(jobId) >> 128]] -= lossOf[jobId];
    }

    /// The provider sets a dataset's limit anywhere from 0 to 20 rho: below what is spent it must
    /// be refused, anywhere else accepted.
    function setLimit(bool second, uint64 limit) external {
        bytes32 datasetId = datasets[second ? 1 : 0];
        limit = uint64(bound(limit, 0, 20e9));
        vm.prank(provider);
        try usage.setDatasetPrivacyLimit(datasetId, limit) {
            if (limit < ghostUsed[datasetId]) limitsBelowUsedAccepted += 1;
        } catch {
            require(limit < ghostUsed[datasetId], "a limit at or above what is spent was refused");
        }
    }

    /// Tries to settle or refund a job that is not open (never recorded, or already closed):
    /// the contract must refuse every time.
    function closeNotOpen(uint256 agreementSeed, uint256 nonceSeed, bool asRefund) external {
        if (agreements.length == 0) return;
        uint256 agreementId = agreements[agreementSeed % agreements.length];
        bytes32 jobId = usage.jobIdOf(agreementId, nonceSeed % (nextNonce[agreementId] + 3));
        if (usage.jobStatus(jobId) == IUsageAgreements.JobStatus.Recorded) return;
        vm.startPrank(operator);
        if (asRefund) {
            try usage.refund(jobId, "bogus") {
                closedWithoutOpenRecord += 1;
            } catch {}
        } else {
            try usage.settle(jobId, bytes32(0), bytes32(0)) {
                closedWithoutOpenRecord += 1;
            } catch {}
        }
        vm.stopPrank();
    }

    function toggleSuspension(uint256 seed) external {
        if (agreements.length == 0) return;
        uint256 agreementId = agreements[seed % agreements.length];
        bool suspended = usage.getAgreement(agreementId).suspended;
        vm.prank(provider);
        if (suspended) usage.resumeAgreement(agreementId);
        else usage.suspendAgreement(agreementId);
    }

    function withdraw() external {
        if (usage.withdrawable(provider) == 0) return;
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
        vm.warp(block.timestamp + bound(secondsAhead, 1, 3 days));
    }

    function agreementCount() external view returns (uint256) {
        return agreements.length;
    }

    function openJobCount() external view returns (uint256) {
        return openJobs.length;
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

    bytes32 internal OTHER_DATASET;

    function setUp() public override {
        super.setUp();
        OTHER_DATASET = _datasetIdOf(provider, bytes16(keccak256("dataset-2")));
        vm.startPrank(provider);
        registry.register(OTHER_DATASET, keccak256("meta-2"), keccak256("content-2"));
        usage.setDatasetPrivacyLimit(OTHER_DATASET, LIMIT / 4);
        vm.stopPrank();
        uint256[2] memory offers = [offerId, _publish(provider, OTHER_DATASET)];
        handler = new UsageHandler(usage, token, consumerKey, provider, operator, offers, RESEARCH, MEAN);
        targetContract(address(handler));
        bytes4[] memory actions = new bytes4[](12);
        actions[0] = UsageHandler.accept.selector;
        actions[1] = UsageHandler.record.selector;
        actions[2] = UsageHandler.settle.selector;
        actions[3] = UsageHandler.settleMany.selector;
        actions[4] = UsageHandler.refund.selector;
        actions[5] = UsageHandler.closeNotOpen.selector;
        actions[6] = UsageHandler.toggleSuspension.selector;
        actions[7] = UsageHandler.withdraw.selector;
        actions[8] = UsageHandler.reclaim.selector;
        actions[9] = UsageHandler.passTime.selector;
        actions[10] = UsageHandler.recordMany.selector;
        actions[11] = UsageHandler.setLimit.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: actions}));
    }

    /// escrow + pending + provider balances + paid out == deposited, and the tokens are there.
    function invariant_escrowConserved() public view {
        uint256 escrow;
        uint256 pending;
        for (uint256 i; i < handler.agreementCount(); ++i) {
            IUsageAgreements.Agreement memory a = usage.getAgreement(handler.agreements(i));
            escrow += a.escrow;
            pending += a.pending;
        }
        uint256 balances = usage.withdrawable(provider);
        assertEq(escrow + pending + balances + usage.totalPaidOut(), usage.totalDeposited(), "conservation");
        assertEq(usage.totalDeposited(), handler.ghostDeposited(), "deposits");
        assertEq(pending, handler.openJobCount() * PRICE, "pending = open jobs * price");
        assertEq(token.balanceOf(address(usage)), escrow + pending + balances, "tokens held");
    }

    /// Calls used never exceed calls bought.
    function invariant_callsNeverExceedBought() public view {
        for (uint256 i; i < handler.agreementCount(); ++i) {
            IUsageAgreements.Agreement memory a = usage.getAgreement(handler.agreements(i));
            assertLe(a.callsUsed, a.callsBought);
            assertLe(uint256(a.callsUsed) + a.callsReclaimed, a.callsBought);
            assertLe(a.callsSettled, a.callsUsed);
        }
    }

    /// For every dataset, the spent privacy loss is the sum of the losses of its recorded,
    /// unrefunded jobs (through every offer and agreement), and never exceeds its limit.
    function invariant_datasetBudgetIsSpentExactly() public view {
        for (uint256 i; i < 2; ++i) {
            bytes32 datasetId = handler.datasets(i);
            (uint64 limit, uint64 used,,) = usage.getDatasetPrivacy(datasetId);
            assertEq(used, handler.ghostUsed(datasetId), "used = sum of unrefunded losses");
            assertLe(used, limit, "used <= limit");
        }
        assertEq(handler.limitsBelowUsedAccepted(), 0, "a limit below what is spent was accepted");
    }

    /// A job id is recorded at most once.
    function invariant_jobRecordedAtMostOnce() public view {
        assertEq(handler.doubleRecords(), 0);
    }

    /// Nothing is settled or refunded without an open record.
    function invariant_noSettleWithoutRecord() public view {
        assertEq(handler.closedWithoutOpenRecord(), 0);
    }
}
