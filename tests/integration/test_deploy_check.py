"""The deploy check refuses a development node on a production chain (issue 12): anvil started
with a non-development chain id answers anvil_*/hardhat_*/evm_* methods and is refused by
``manage.py check --deploy``; on the development chain (31337) anvil is allowed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dataspace.chain.checks import DEVELOPMENT_PROBES, development_methods_answered, method_is_absent
from tests.support.anvil import AnvilNode, free_port
from tests.unit.test_settings import production_env, run_manage

pytestmark = pytest.mark.integration
OPERATOR_KEY = "0x" + "42" * 32  # not anvil's public key, so only the node itself is at issue


@pytest.fixture
def production_anvil(tmp_path: Path) -> Iterator[AnvilNode]:
    node = AnvilNode(tmp_path / "state.json", chain_id=4242).start()
    try:
        yield node
    finally:
        node.stop()


def test_anvil_answers_every_development_probe(production_anvil: AnvilNode) -> None:
    assert development_methods_answered(production_anvil.url) == [method for method, _ in DEVELOPMENT_PROBES]


def test_a_development_node_on_a_production_chain_id_is_refused(production_anvil: AnvilNode, tmp_path: Path) -> None:
    env = production_env(tmp_path) | {
        "CHAIN_ID": "4242",
        "CHAIN_RPC_URL": production_anvil.url,
        "CHAIN_OPERATOR_KEY": OPERATOR_KEY,
    }
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "redlake.E002" in output
    assert "anvil_impersonateAccount" in output
    assert "evm_revert" in output


def test_the_development_chain_may_run_anvil(tmp_path: Path) -> None:
    node = AnvilNode(tmp_path / "state.json").start()
    try:
        env = production_env(tmp_path) | {"CHAIN_ID": "31337", "CHAIN_RPC_URL": node.url}
        result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    finally:
        node.stop()
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_unreachable_node_on_a_production_chain_fails_the_check(tmp_path: Path) -> None:
    env = production_env(tmp_path) | {
        "CHAIN_ID": "4242",
        "CHAIN_RPC_URL": f"http://127.0.0.1:{free_port()}",
        "CHAIN_OPERATOR_KEY": OPERATOR_KEY,
    }
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "redlake.W002" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("response", "absent"),
    [
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "Method not found"}}, True),  # Besu, anvil
        (
            {"error": {"code": -32601, "message": "the method evm_revert does not exist/is not available"}},
            True,
        ),  # Geth
        ({"error": {"code": -32604, "message": "Method not enabled"}}, True),  # Besu, namespace off
        ({"error": {"code": -32004, "message": "method not supported"}}, True),  # filtering proxies
        ({"error": {"code": -32602, "message": "invalid string length"}}, False),  # anvil: has it
        ({"result": True}, False),
        ({}, False),  # no JSON-RPC answer at all: not proof of absence
    ],
)
def test_only_an_unknown_method_error_counts_as_absent(response: dict[str, object], absent: bool) -> None:
    assert method_is_absent(response) is absent
