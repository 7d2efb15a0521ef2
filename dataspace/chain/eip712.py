"""EIP-712 typed data for the contracts' relayed signatures, built and signed with eth-account.

The type strings here and in the contracts must match exactly; the integration tests prove it by
having the contracts accept what this module signs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data

DATASET_CHANGE_TYPES = {
    "DatasetChange": [
        {"name": "datasetId", "type": "bytes32"},
        {"name": "action", "type": "uint8"},
        {"name": "metadataHash", "type": "bytes32"},
        {"name": "contentHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}
USAGE_TYPES = {
    "Usage": [
        {"name": "agreementId", "type": "uint256"},
        {"name": "jobId", "type": "bytes32"},
        {"name": "purpose", "type": "bytes32"},
        {"name": "operation", "type": "bytes32"},
        {"name": "paramsHash", "type": "bytes32"},
        {"name": "privacyLoss", "type": "uint64"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}
ACTION_REGISTER, ACTION_UPDATE, ACTION_RETIRE = 0, 1, 2


def signable_of(typed_data: dict[str, Any]) -> SignableMessage:
    return encode_typed_data(typed_data["domain"], typed_data["types"], typed_data["message"])


def sign_typed_data(*, key: bytes, typed_data: dict[str, Any]) -> bytes:
    return bytes(Account.sign_message(signable_of(typed_data), private_key=key).signature)


def _domain(name: str, chain_id: int, contract: str) -> dict[str, Any]:
    return {"name": name, "version": "1", "chainId": chain_id, "verifyingContract": contract}


def sign_dataset_change(
    *,
    key: bytes,
    chain_id: int,
    registry: str,
    dataset_id: bytes,
    action: int,
    metadata_hash: bytes,
    content_hash: bytes,
    nonce: int,
    deadline: int,
) -> bytes:
    message = {
        "datasetId": dataset_id,
        "action": action,
        "metadataHash": metadata_hash,
        "contentHash": content_hash,
        "nonce": nonce,
        "deadline": deadline,
    }
    signable = encode_typed_data(_domain("Redlake DatasetRegistry", chain_id, registry), DATASET_CHANGE_TYPES, message)
    return bytes(Account.sign_message(signable, private_key=key).signature)


def dataset_change_typed_data(
    *,
    chain_id: int,
    registry: str,
    dataset_id: bytes,
    action: int,
    metadata_hash: bytes,
    content_hash: bytes,
    nonce: int,
    deadline: int,
) -> dict[str, Any]:
    """A DatasetChange as JSON-able typed data (bytes as 0x-hex), for ``outbox.signature_by``:
    the chain signer signs it for a custodial provider when it sends the write."""
    return {
        "domain": _domain("Redlake DatasetRegistry", chain_id, registry),
        "types": DATASET_CHANGE_TYPES,
        "message": {
            "datasetId": "0x" + dataset_id.hex(),
            "action": action,
            "metadataHash": "0x" + metadata_hash.hex(),
            "contentHash": "0x" + content_hash.hex(),
            "nonce": nonce,
            "deadline": deadline,
        },
    }


@dataclass(frozen=True)
class Usage:
    """One use of an agreement as the consumer signs it and ``recordUsage`` checks it: the
    parameters' hash (``encoding.params_hash``) binds the computation asked for, the privacy loss
    is nano-rho (``encoding.rho_nano``)."""

    chain_id: int
    contract: str
    agreement_id: int
    job_id: bytes
    purpose: bytes
    operation: bytes
    params_hash: bytes
    privacy_loss: int
    nonce: int
    deadline: int

    def typed_data(self) -> dict[str, Any]:
        """The EIP-712 document, JSON-able (bytes as 0x hex): what a signer signs, and what the
        outbox keeps when the chain signer is to sign it for a custodial wallet."""
        message = {
            "agreementId": self.agreement_id,
            "jobId": "0x" + self.job_id.hex(),
            "purpose": "0x" + self.purpose.hex(),
            "operation": "0x" + self.operation.hex(),
            "paramsHash": "0x" + self.params_hash.hex(),
            "privacyLoss": self.privacy_loss,
            "nonce": self.nonce,
            "deadline": self.deadline,
        }
        domain = _domain("Redlake UsageAgreements", self.chain_id, self.contract)
        return {"domain": domain, "types": USAGE_TYPES, "message": message}

    def signable(self) -> SignableMessage:
        return signable_of(self.typed_data())


def recover_usage_signer(*, signature: bytes, usage: Usage) -> str:
    """The address that signed a Usage message (checked off chain before anything is reserved)."""
    return str(Account.recover_message(usage.signable(), signature=signature))


def sign_usage(*, key: bytes, usage: Usage) -> bytes:
    return bytes(Account.sign_message(usage.signable(), private_key=key).signature)
