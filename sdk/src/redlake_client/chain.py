"""The chain, read and written directly from the consumer's machine (web3), never through the
platform: the contracts' functions and events the SDK needs, by their ABI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD

from redlake_client.errors import ChainError, ChainMismatch
from redlake_client.signing import Signer


def _fn(name: str, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]], mutability: str = "view") -> Any:
    return {
        "type": "function",
        "name": name,
        "stateMutability": mutability,
        "inputs": [{"name": n, "type": t} for n, t in inputs],
        "outputs": [{"name": n, "type": t} for n, t in outputs],
    }


def _event(name: str, fields: list[tuple[str, str, bool]]) -> Any:
    return {
        "type": "event",
        "name": name,
        "anonymous": False,
        "inputs": [{"name": n, "type": t, "indexed": i} for n, t, i in fields],
    }


USAGE_AGREEMENTS_ABI = [
    _fn("token", [], [("", "address")]),
    _fn("registry", [], [("", "address")]),
    _fn(
        "getUsage", [("jobId", "bytes32")], [("agreementId", "uint256"), ("status", "uint8"), ("privacyLoss", "uint64")]
    ),
    # ISSUE-14: a job settled in a batch is proven by its receipt leaf against the batch's root.
    _fn("verifyReceipt", [("batchId", "uint256"), ("leaf", "bytes32"), ("proof", "bytes32[]")], [("", "bool")]),
    _fn("acceptOffer", [("offerId", "uint256"), ("calls", "uint32")], [("agreementId", "uint256")], "nonpayable"),
    _fn(
        "recordUsage",
        [
            ("agreementId", "uint256"),
            ("jobId", "bytes32"),
            ("purpose", "bytes32"),
            ("operation", "bytes32"),
            ("paramsHash", "bytes32"),
            ("privacyLoss", "uint64"),
            ("deadline", "uint256"),
            ("consumerSignature", "bytes"),
        ],
        [],
        "nonpayable",
    ),
    {
        "type": "function",
        "name": "getAgreement",
        "stateMutability": "view",
        "inputs": [{"name": "agreementId", "type": "uint256"}],
        "outputs": [
            {
                "name": "details",
                "type": "tuple",
                "components": [
                    {"name": n, "type": t}
                    for n, t in [
                        ("consumer", "address"),
                        ("provider", "address"),
                        ("offerId", "uint256"),
                        ("callsBought", "uint32"),
                        ("callsUsed", "uint32"),
                        ("callsSettled", "uint32"),
                        ("callsReclaimed", "uint32"),
                        ("pricePerCall", "uint96"),
                        ("escrow", "uint256"),
                        ("pending", "uint256"),
                        ("expiry", "uint64"),
                        ("suspended", "bool"),
                        ("metered", "bool"),
                    ]
                ],
            }
        ],
    },
    _event(
        "AgreementCreated",
        [
            ("agreementId", "uint256", True),
            ("offerId", "uint256", True),
            ("consumer", "address", True),
            ("calls", "uint32", False),
            ("amount", "uint256", False),
            ("expiry", "uint64", False),
        ],
    ),
    _event(
        "UsageRecorded",
        [
            ("jobId", "bytes32", True),
            ("agreementId", "uint256", True),
            ("purpose", "bytes32", False),
            ("operation", "bytes32", False),
            ("paramsHash", "bytes32", False),
            ("privacyLoss", "uint64", False),
        ],
    ),
    _event(
        "JobSettled",
        [
            ("jobId", "bytes32", True),
            ("agreementId", "uint256", True),
            ("resultHash", "bytes32", False),
            ("attestationHash", "bytes32", False),
        ],
    ),
    _event("BatchSettled", [("batchId", "uint256", True), ("root", "bytes32", False), ("jobIds", "bytes32[]", False)]),
]
REGISTRY_ABI = [
    _fn(
        "getDataset",
        [("datasetId", "bytes32")],
        [("provider", "address"), ("active", "bool"), ("metadataHash", "bytes32"), ("contentHash", "bytes32")],
    )
]
CUSTODIAN_REGISTRY_ABI = [
    _fn("custodianAt", [("blockNumber", "uint256")], [("", "address")]),
    _fn("current", [], [("", "address")]),
    {"type": "error", "name": "NoCustodianAt", "inputs": [{"name": "blockNumber", "type": "uint256"}]},
]
ERC20_ABI = [
    _fn("approve", [("spender", "address"), ("amount", "uint256")], [("", "bool")], "nonpayable"),
    _fn("allowance", [("owner", "address"), ("spender", "address")], [("", "uint256")]),
    _fn("balanceOf", [("owner", "address")], [("", "uint256")]),
]
NO_CUSTODIAN_AT_SELECTOR = "0x" + bytes(Web3.keccak(text="NoCustodianAt(uint256)"))[:4].hex()
JOB_STATUS = {0: "none", 1: "recorded", 2: "settled", 3: "refunded"}


@dataclass(frozen=True)
class Event:
    args: dict[str, Any]
    tx_hash: str
    block_number: int


class Chain:
    """A node the consumer chose, checked to be the space's chain before anything is read."""

    def __init__(self, rpc_url: str, *, usage_agreements: str, expected_chain_id: int | None, timeout: float = 10):
        self.rpc_url = rpc_url
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        try:
            self.chain_id = int(self.w3.eth.chain_id)
        except Exception as exc:
            raise ChainError(f"The chain node at {rpc_url} is unreachable ({type(exc).__name__}).") from None
        if expected_chain_id is not None and self.chain_id != expected_chain_id:
            raise ChainMismatch(
                f"The chain node at {rpc_url} is chain {self.chain_id}, but the space runs on chain "
                f"{expected_chain_id}: refusing to read or sign for the wrong chain."
            )
        self.usage = self.w3.eth.contract(address=Web3.to_checksum_address(usage_agreements), abi=USAGE_AGREEMENTS_ABI)

    def _call(self, fn: Any) -> Any:
        try:
            return fn.call()
        except Exception as exc:
            raise ChainError(f"A view call to the chain failed ({type(exc).__name__}: {exc}).") from None

    def token_address(self) -> str:
        return str(self._call(self.usage.functions.token()))

    def registry_address(self) -> str:
        return str(self._call(self.usage.functions.registry()))

    def token(self) -> Any:
        return self.w3.eth.contract(address=Web3.to_checksum_address(self.token_address()), abi=ERC20_ABI)

    def balance(self, address: str) -> int:
        return int(self._call(self.token().functions.balanceOf(Web3.to_checksum_address(address))))

    def usage_of(self, job_id: bytes) -> tuple[int, str, int]:
        agreement_id, status, loss = self._call(self.usage.functions.getUsage(job_id))
        return int(agreement_id), JOB_STATUS.get(int(status), str(status)), int(loss)

    def verify_receipt(self, batch_id: int, leaf: bytes, proof: list[bytes]) -> bool:
        """Whether the chain proves ``leaf`` part of settlement batch ``batch_id``."""
        return bool(self._call(self.usage.functions.verifyReceipt(batch_id, leaf, proof)))

    def agreement(self, agreement_id: int) -> dict[str, Any]:
        found = self._call(self.usage.functions.getAgreement(agreement_id))
        names = [
            "consumer",
            "provider",
            "offer_id",
            "calls_bought",
            "calls_used",
            "calls_settled",
            "calls_reclaimed",
            "price_per_call",
            "escrow",
            "pending",
            "expiry",
            "suspended",
            "metered",
        ]
        return dict(zip(names, found, strict=True))

    def dataset(self, chain_dataset_id: bytes) -> dict[str, Any]:
        registry = self.w3.eth.contract(address=Web3.to_checksum_address(self.registry_address()), abi=REGISTRY_ABI)
        provider, active, metadata_hash, content_hash = self._call(registry.functions.getDataset(chain_dataset_id))
        return {
            "provider": provider,
            "active": active,
            "metadata_hash": bytes(metadata_hash),
            "content_hash": bytes(content_hash),
        }

    def custodian_at(self, registry: str, block: int) -> str | None:
        """The receipt-signing address CustodianRegistry at ``registry`` held at ``block`` (its
        ``custodianAt``), read through this node; None if no custodian was registered then."""
        address = Web3.to_checksum_address(registry)
        try:
            code = self.w3.eth.get_code(address)
        except Exception as exc:
            raise ChainError(f"The chain node at {self.rpc_url} could not be read ({type(exc).__name__}).") from None
        if not code:
            raise ChainError(f"No contract at {address}: it cannot be the space's CustodianRegistry.")
        contract = self.w3.eth.contract(address=address, abi=CUSTODIAN_REGISTRY_ABI)
        try:
            return str(contract.functions.custodianAt(block).call())
        except ContractCustomError as exc:
            if str(exc.data).startswith(NO_CUSTODIAN_AT_SELECTOR):
                return None
            raise ChainError(f"custodianAt({block}) reverted ({exc.data}).") from None
        except Exception as exc:
            raise ChainError(f"A view call to the chain failed ({type(exc).__name__}: {exc}).") from None

    def event(self, name: str, **indexed: Any) -> Event | None:
        """The newest ``name`` event of UsageAgreements with these indexed arguments."""
        try:
            logs = self.usage.events[name]().get_logs(argument_filters=indexed, from_block=0, to_block="latest")
        except Exception as exc:
            raise ChainError(f"A log query to the chain failed ({type(exc).__name__}).") from None
        if not logs:
            return None
        last = logs[-1]
        return Event(dict(last["args"]), "0x" + bytes(last["transactionHash"]).hex(), int(last["blockNumber"]))

    def usage_signature(self, tx_hash: str) -> bytes:
        """The consumer's signature inside the recordUsage transaction that recorded a job."""
        tx = self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        _, args = self.usage.decode_function_input(tx["input"])
        return bytes(args["consumerSignature"])

    def transaction_to(self, tx_hash: str) -> str:
        tx = self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        return str(tx["to"])

    # ---- writes from the consumer's own wallet

    def _send(self, signer: Signer, call: Any) -> str:
        w3 = self.w3
        try:
            tx = call.build_transaction(
                {
                    "from": signer.address,
                    "nonce": w3.eth.get_transaction_count(Web3.to_checksum_address(signer.address), "pending"),
                    "chainId": self.chain_id,
                }
            )
            tx_hash = w3.eth.send_raw_transaction(signer.sign_transaction(tx))
            receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        except Exception as exc:
            raise ChainError(f"The chain refused the transaction ({type(exc).__name__}: {exc}).") from None
        if int(receipt["status"]) != 1:
            raise ChainError(f"The transaction {tx_hash.hex()} reverted.")
        return "0x" + bytes(tx_hash).hex().removeprefix("0x")

    def approve_and_accept(self, signer: Signer, *, offer_id: int, calls: int, amount: int) -> tuple[str, str, int]:
        """Approves the escrow and accepts the offer from the consumer's wallet; returns the two
        transaction hashes and the new agreement's id on chain."""
        token = self.token()
        approve_tx = self._send(signer, token.functions.approve(self.usage.address, amount))
        accept_tx = self._send(signer, self.usage.functions.acceptOffer(offer_id, calls))
        receipt = self.w3.eth.get_transaction_receipt(accept_tx)  # type: ignore[arg-type]
        for log in self.usage.events.AgreementCreated().process_receipt(receipt, errors=DISCARD):
            return approve_tx, accept_tx, int(log["args"]["agreementId"])
        raise ChainError(f"acceptOffer in {accept_tx} created no agreement.")
