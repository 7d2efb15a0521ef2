"""Indexer catch-up speed over 10,000 events on a real anvil, next to a bare eth_getLogs of the
same range (no decoding, no database) in the same run."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVENTS = 10_000
PER_BLOCK = 500


def main() -> None:
    from tests.support.anvil import AnvilNode

    work = Path(tempfile.mkdtemp(prefix="redlake-bench-indexer-"))
    node = AnvilNode(work / "anvil.json").start()
    os.environ.update(DJANGO_SETTINGS_MODULE="dataspace.settings", REDLAKE_VAR_DIR=str(work), CHAIN_RPC_URL=node.url)
    os.environ.pop("DATABASE_URL", None)
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        measure(node)
    finally:
        node.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


def measure(node: object) -> None:
    from web3 import Web3
    from web3.types import TxParams, Wei

    from bench.common import metric, write_result
    from dataspace.chain import deploy, gateway, indexer
    from dataspace.chain.models import ChainEvent

    list(deploy.deploy_all())
    w3 = gateway.web3()
    operator = gateway.operator()
    token = gateway.contract("DevToken")
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    nonce = w3.eth.get_transaction_count(operator.address)
    recipient = Web3.to_checksum_address("0x" + "ab" * 20)
    params: TxParams = {
        "from": operator.address,
        "nonce": nonce,
        "gas": 80_000,
        "chainId": gateway.chain_id(),
        "maxFeePerGas": Wei(10**10),
        "maxPriorityFeePerGas": Wei(10**9),
    }
    template: dict[str, Any] = dict(token.functions.mint(recipient, 1).build_transaction(params))
    for i in range(EVENTS):
        signed = operator.sign_transaction({**template, "nonce": nonce + i})
        w3.eth.send_raw_transaction(signed.raw_transaction)
        if (i + 1) % PER_BLOCK == 0:
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    head = w3.eth.block_number

    start = time.perf_counter()
    logs = w3.eth.get_logs({"address": token.address, "fromBlock": 0, "toBlock": head})
    raw_seconds = time.perf_counter() - start

    start = time.perf_counter()
    while (report := indexer.index_events()) is not None and report.to_block >= report.from_block:
        pass
    index_seconds = time.perf_counter() - start
    indexed = ChainEvent.objects.filter(event="Transfer").count()
    assert indexed == EVENTS, indexed
    metrics = [
        metric(
            "indexer catch-up speed (10,000 Transfer events)",
            indexed / index_seconds,
            "events/s",
            target=None,
            better="higher",
            baseline=("bare eth_getLogs, events/s", len(logs) / raw_seconds),
        ),
        metric("indexer catch-up time (10,000 events)", index_seconds, "s", target=None, better="lower"),
    ]
    print(write_result("indexer", metrics, f"anvil, {head} blocks, SQLite, chunk 2000 blocks, decode + insert"))


if __name__ == "__main__":
    main()
