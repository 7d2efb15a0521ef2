// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {console} from "forge-std/console.sol";

import {IUsageAgreements} from "../src/IUsageAgreements.sol";
import {Fixture} from "./Fixture.sol";

/// forge's `cool` cheatcode (newer than this forge-std's Vm interface): marks a contract's
/// storage cold again, so each measured call pays first-access costs as its own transaction would.
interface CoolingVm {
    function cool(address target) external;
}

/// Gas per job, measured with gasleft() around each call, storage cooled before each call as if
/// it were its own transaction. Execution gas: a transaction adds 21,000 plus its calldata, which
/// the `tx` lines add (calldata priced per EIP-2028: 4 per zero byte, 16 per other byte).
///
/// Prints one `GAS <name> <value>` line per number (`forge test --match-contract GasTest -vv`);
/// bench/gas.py parses them with the regex `GAS (.+?) (\d+)\s*$`.
///
/// The state is a busy space's: the provider already has unwithdrawn earnings, the dataset has a
/// privacy limit and has spent some of it, the agreement is fresh, and jobs use consecutive
/// nonces, so one record in eight opens a new storage word of job cells (the averages include
/// that cost). Every measured job spends privacy loss, so each record reads the offer's dataset
/// and writes the dataset's budget slot.
contract GasTest is Fixture {
    uint256 internal constant BATCH = 100;
    uint256 internal constant UNBATCHED = 8; // one full word of job cells
    // Before the per-dataset budget (issue 11) recordUsage cost 31,787 and record + settleBatch/100
    // 33,759; the budget and the signed params hash may add at most 10,000 to each.
    uint256 internal constant RECORD_MAX = 31_787 + 10_000;
    uint256 internal constant AMORTIZED_MAX = 33_759 + 10_000;

    function setUp() public override {
        super.setUp();
        uint256 earlier = _accept(1);
        _settle(_record(earlier, 0)); // the provider's balance slot exists, as in a busy space
    }

    function test_gas_recordUsageAndSettle() public {
        uint256 agreementId = _accept(MAX_CALLS);
        uint256 recordTotal;
        uint256 settleTotal;
        uint256 worst;
        uint256 calldataTotal;
        for (uint256 i; i < UNBATCHED; ++i) {
            bytes32 jobId = usage.jobIdOf(agreementId, i);
            bytes memory sig = _sign(consumerKey, agreementId, jobId, RESEARCH, MEAN, PARAMS, LOSS, block.timestamp);
            bytes memory recordCall = abi.encodeCall(
                IUsageAgreements.recordUsage, (agreementId, jobId, RESEARCH, MEAN, PARAMS, LOSS, block.timestamp, sig)
            );
            bytes memory settleCall =
                abi.encodeCall(IUsageAgreements.settle, (jobId, keccak256("result"), keccak256("attestation")));
            uint256 recordGas = _measure(recordCall);
            uint256 settleGas = _measure(settleCall);
            recordTotal += recordGas;
            settleTotal += settleGas;
            if (recordGas + settleGas > worst) worst = recordGas + settleGas;
            calldataTotal += _calldataGas(recordCall) + _calldataGas(settleCall);
        }
        assertEq(usage.getAgreement(agreementId).callsSettled, UNBATCHED);
        uint256 perJob = (recordTotal + settleTotal) / UNBATCHED;
        console.log("GAS recordUsage", recordTotal / UNBATCHED);
        console.log("GAS settle", settleTotal / UNBATCHED);
        console.log("GAS recordUsage+settle", perJob);
        console.log("GAS recordUsage+settle worst", worst);
        console.log("GAS tx recordUsage+settle", perJob + 2 * 21_000 + calldataTotal / UNBATCHED);
        assertLe(perJob, 80_000, "recordUsage + settle, unbatched, per job");
        assertLe(recordTotal / UNBATCHED, RECORD_MAX, "recordUsage with the dataset budget");
    }

    /// A use that spends no privacy loss (a cached answer, non-personal data) skips the budget.
    function test_gas_recordUsageWithoutPrivacyLoss() public {
        uint256 agreementId = _accept(MAX_CALLS);
        uint256 recordTotal;
        for (uint256 i; i < UNBATCHED; ++i) {
            bytes32 jobId = usage.jobIdOf(agreementId, i);
            bytes memory sig = _sign(consumerKey, agreementId, jobId, RESEARCH, MEAN, PARAMS, 0, block.timestamp);
            recordTotal += _measure(
                abi.encodeCall(IUsageAgreements.recordUsage, (agreementId, jobId, RESEARCH, MEAN, PARAMS, 0, block.timestamp, sig))
            );
        }
        console.log("GAS recordUsage zero loss", recordTotal / UNBATCHED);
        assertLe(recordTotal / UNBATCHED, RECORD_MAX);
    }

    function test_gas_batchOf100() public {
        uint256 agreementId = _accept(MAX_CALLS);
        bytes32[] memory jobs = new bytes32[](BATCH);
        uint256 recordTotal;
        uint256 calldataTotal;
        for (uint256 i; i < BATCH; ++i) {
            jobs[i] = usage.jobIdOf(agreementId, i);
            bytes memory sig = _sign(consumerKey, agreementId, jobs[i], RESEARCH, MEAN, PARAMS, LOSS, block.timestamp);
            bytes memory recordCall = abi.encodeCall(
                IUsageAgreements.recordUsage, (agreementId, jobs[i], RESEARCH, MEAN, PARAMS, LOSS, block.timestamp, sig)
            );
            recordTotal += _measure(recordCall);
            calldataTotal += _calldataGas(recordCall);
        }
        bytes memory batchCall = abi.encodeCall(IUsageAgreements.settleBatch, (keccak256("root"), jobs));
        uint256 batchGas = _measure(batchCall);
        calldataTotal += _calldataGas(batchCall);
        assertEq(usage.getAgreement(agreementId).callsSettled, BATCH);
        uint256 amortized = (recordTotal + batchGas) / BATCH;
        console.log("GAS settleBatch(100)", batchGas);
        console.log("GAS settleBatch per job", batchGas / BATCH);
        console.log("GAS recordUsage avg over 100", recordTotal / BATCH);
        console.log("GAS amortized per job (record + batch/100)", amortized);
        console.log("GAS tx amortized per job", amortized + (21_000 * (BATCH + 1) + calldataTotal) / BATCH);
        assertLe(amortized, AMORTIZED_MAX, "recordUsage + settleBatch/100, per job");
    }

    /// Execution gas of one call by the operator, with the contracts' storage cold.
    function _measure(bytes memory data) internal returns (uint256 used) {
        CoolingVm(address(vm)).cool(address(usage));
        CoolingVm(address(vm)).cool(address(registry));
        vm.prank(operator);
        uint256 before = gasleft();
        (bool ok,) = address(usage).call(data);
        used = before - gasleft();
        require(ok, "measured call reverted");
    }

    function _calldataGas(bytes memory data) internal pure returns (uint256 cost) {
        for (uint256 i; i < data.length; ++i) {
            cost += data[i] == 0 ? 4 : 16;
        }
    }
}
