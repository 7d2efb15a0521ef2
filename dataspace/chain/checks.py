"""Deployment checks for the chain settings."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register


@register(deploy=True)
def operator_key_is_not_a_development_key(**_: Any) -> list[Error]:
    # anvil's first key is public knowledge: on any real chain its funds belong to everyone.
    if settings.CHAIN_OPERATOR_KEY == settings.ANVIL_DEV_KEY and settings.CHAIN_ID != 31337:
        return [
            Error(
                "CHAIN_OPERATOR_KEY is anvil's public development key on a non-development chain.",
                hint="Set CHAIN_OPERATOR_KEY to the private key of the space's own funded operator account.",
                id="redlake.E001",
            )
        ]
    return []


DEVELOPMENT_CHAIN_ID = 31337
# One harmless call per development namespace. Read-only where the namespace has a read-only
# method; otherwise malformed parameters, which a node that has the method refuses as invalid
# params (so nothing changes) and a node without it refuses as an unknown method.
DEVELOPMENT_PROBES: tuple[tuple[str, list[Any]], ...] = (
    ("anvil_nodeInfo", []),
    ("anvil_impersonateAccount", ["not-an-address"]),
    ("hardhat_metadata", []),
    ("hardhat_impersonateAccount", ["not-an-address"]),
    ("evm_revert", ["not-a-snapshot"]),
    ("evm_setNextBlockTimestamp", ["not-a-timestamp"]),
)
# How nodes say a method is not there: JSON-RPC's -32601, and the texts of Geth ("the method ...
# does not exist/is not available"), Besu ("Method not found"/"Method not enabled") and proxies
# that filter namespaces (-32004 "method not supported").
_ABSENT_CODES = {-32601, -32004}
_ABSENT_WORDS = ("not found", "does not exist", "not available", "not supported", "unsupported", "not enabled")


def method_is_absent(response: dict[str, Any]) -> bool:
    """Whether a JSON-RPC response says the method does not exist on the node. Anything else
    (a result, invalid params, an internal error) means the node has it."""
    error = response.get("error")
    if not isinstance(error, dict) or "result" in response:
        return False
    message = str(error.get("message", "")).lower()
    return error.get("code") in _ABSENT_CODES or any(words in message for words in _ABSENT_WORDS)


def development_methods_answered(url: str, *, timeout: float = 5.0) -> list[str]:
    """The development methods (``anvil_*``, ``hardhat_*``, ``evm_*``) the node at ``url``
    answers. Raises ``OSError`` when the node cannot be reached."""
    answered = []
    for number, (method, params) in enumerate(DEVELOPMENT_PROBES, start=1):
        body = json.dumps({"jsonrpc": "2.0", "id": number, "method": method, "params": params}).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 - the configured node
                response = json.loads(reply.read())
        except urllib.error.HTTPError as exc:  # some nodes answer an unknown method with HTTP 4xx
            try:
                response = json.loads(exc.read())
            except ValueError:
                response = {"error": {"code": -32601, "message": f"HTTP {exc.code}"}} if exc.code == 404 else {}
        if not method_is_absent(response):
            answered.append(method)
    return answered


@register(deploy=True)
def node_has_no_development_methods(**_: Any) -> list[CheckMessage]:
    """ISSUE-12: on any chain but the development one, a node answering anvil's, Hardhat's or the
    ``evm_*`` methods lets whoever reaches it impersonate accounts, set storage and revert blocks:
    the audit trail could be rewritten. Such a node is refused."""
    if settings.CHAIN_ID == DEVELOPMENT_CHAIN_ID:
        return []
    try:
        answered = development_methods_answered(settings.CHAIN_RPC_URL, timeout=settings.CHAIN_RPC_TIMEOUT)
    except (OSError, ValueError) as exc:
        return [
            Warning(
                f"Could not ask the chain node at {settings.CHAIN_RPC_URL} which methods it answers ({exc}).",
                hint="Run the deploy check where the node is reachable: it refuses development nodes.",
                id="redlake.W002",
            )
        ]
    if not answered:
        return []
    return [
        Error(
            f"The chain node at {settings.CHAIN_RPC_URL} answers development methods ({', '.join(answered)}) "
            f"on chain {settings.CHAIN_ID}: anyone reaching it can impersonate accounts and rewrite history.",
            hint="Run a proof-of-authority client (Besu QBFT, Geth clique) without debug/admin/dev namespaces; "
            f"anvil only on the development chain {DEVELOPMENT_CHAIN_ID}.",
            id="redlake.E002",
        )
    ]
