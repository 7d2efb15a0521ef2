"""The one module that owns web3: the node connection, the operator account and contracts.

Everything else reaches the chain through this module, the outbox and the agents.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from django.conf import settings
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, Web3ValidationError

from dataspace.chain import artifacts
from dataspace.chain.models import Deployment
from dataspace.errors import DomainError, ErrorCode, TransientError

CONTRACTS = ("DatasetRegistry", "UsageAgreements", "DevToken", "AlgorithmApprovals", "CustodianRegistry")


class ChainUnavailable(TransientError):
    """The node cannot be reached or answers for another chain. Transient: retry."""

    code = ErrorCode.CHAIN_UNAVAILABLE


class ChainReverted(DomainError):
    """The contract refused the call; ``message`` holds the decoded reason. Permanent."""

    code = ErrorCode.CHAIN_REVERTED


@cache
def _web3(url: str, timeout: float) -> Web3:
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
    # web3's validation middleware asks the node for its chain id twice before every eth_call, to
    # check a chainId field our calls never carry: two round trips of three. Our writes are signed
    # here for CHAIN_ID (EIP-155) and sent raw, and ``connected_web3`` checks the node's chain.
    w3.middleware_onion.remove("validation")
    return w3


def web3() -> Web3:
    return _web3(settings.CHAIN_RPC_URL, settings.CHAIN_RPC_TIMEOUT)


def chain_id() -> int:
    return int(settings.CHAIN_ID)


def connected_web3() -> Web3:
    """The node, after checking it answers and is the chain we expect (a wrong chain id would
    replay our signed writes on someone else's chain)."""
    w3 = web3()
    try:
        actual = w3.eth.chain_id
    except Exception as exc:  # requests and web3 raise many types for "no node there"
        raise ChainUnavailable(
            f"The chain node at {settings.CHAIN_RPC_URL} is unreachable ({type(exc).__name__})."
        ) from None
    if actual != chain_id():
        raise ChainUnavailable(
            f"The node at {settings.CHAIN_RPC_URL} serves chain {actual}, not the configured {chain_id()}.",
            code=ErrorCode.CHAIN_MISMATCH,
        )
    return w3


@cache
def _account(key: str) -> LocalAccount:
    account: LocalAccount = Account.from_key(key)
    return account


def operator() -> LocalAccount:
    return _account(settings.CHAIN_OPERATOR_KEY)


def operator_address() -> str:
    """The operator's address; the roles that only queue writes know it without its key
    (ISSUE-12 custody: ``CHAIN_OPERATOR_ADDRESS``)."""
    if settings.CHAIN_OPERATOR_ADDRESS:
        return str(Web3.to_checksum_address(settings.CHAIN_OPERATOR_ADDRESS))
    return str(operator().address)


def deployment(name: str) -> Deployment:
    found = Deployment.objects.filter(chain_id=chain_id(), name=name).first()
    if found is None:
        raise ChainUnavailable(f"{name} is not deployed on chain {chain_id()}: run manage.py chain deploy.")
    return found


def deployments() -> list[Deployment]:
    """Every contract deployed on the configured chain, by name."""
    return list(Deployment.objects.filter(chain_id=chain_id()).order_by("name"))


def contract(name: str, address: str | None = None) -> type[Contract] | Contract:
    return _contract(settings.CHAIN_RPC_URL, settings.CHAIN_RPC_TIMEOUT, name, address or deployment(name).address)


@lru_cache(maxsize=256)
def _contract(url: str, timeout: float, name: str, address: str) -> Contract:
    # Building a contract from its ABI costs ~6 ms, more than the view call it serves; the
    # deployment's address is still looked up every time, so a redeployment is seen at once.
    built: Contract = _web3(url, timeout).eth.contract(
        address=Web3.to_checksum_address(address), abi=artifacts.load(name).abi
    )
    return built


def view(call: Any) -> Any:
    """The result of a contract view call (``contract(...).functions.f(args)``). A node that
    cannot be reached is ``ChainUnavailable`` (retried by the caller's task), not whatever
    exception the HTTP library chose."""
    try:
        return call.call()
    except ContractLogicError:
        raise
    except Exception as exc:
        raise ChainUnavailable(
            f"The chain node at {settings.CHAIN_RPC_URL} did not answer a view call ({type(exc).__name__})."
        ) from None


def revert_reason(exc: ContractLogicError) -> str:
    data: Any = exc.data if isinstance(exc, ContractCustomError) or isinstance(exc.data, str) else None
    if data is None and exc.message:
        return str(exc.message).removeprefix("execution reverted: ")
    return artifacts.decode_revert(data, CONTRACTS)


def latest_event(name: str, event: str, *, indexed: dict[str, Any], chunk: int | None = None) -> dict[str, Any] | None:
    """The arguments of the newest ``event`` of the deployed contract ``name`` whose indexed
    arguments equal ``indexed``, or None if it was never emitted (read as ``latest_log``)."""
    found = latest_log(name, event, indexed=indexed, chunk=chunk)
    return None if found is None else dict(found["args"])


def latest_log(name: str, event: str, *, indexed: dict[str, Any], chunk: int | None = None) -> dict[str, Any] | None:
    """The newest decoded log (``args``, ``blockNumber``, ``transactionHash``...) of ``event``
    of the deployed contract ``name`` whose indexed arguments equal ``indexed``, or None.

    Read from the chain, not the index (the custodian trusts the node, not our database), from
    the head back to the contract's deployment block in ranges of ``chunk`` blocks: nodes refuse
    unbounded log queries, and the event looked for is usually recent."""
    w3 = connected_web3()
    events = contract(name).events[event]()
    floor = deployment(name).block_number or 0
    chunk = chunk or settings.CHAIN_INDEXER_CHUNK
    try:
        last = int(w3.eth.block_number)
        while last >= floor:
            first = max(floor, last - chunk + 1)
            found = events.get_logs(argument_filters=indexed, from_block=first, to_block=last)
            if found:
                return dict(found[-1])
            last = first - 1
    except Web3ValidationError:
        raise  # a wrong argument name is our bug, not the node's absence
    except Exception as exc:
        raise ChainUnavailable(
            f"The chain node at {settings.CHAIN_RPC_URL} did not answer a log query ({type(exc).__name__})."
        ) from None
    return None
