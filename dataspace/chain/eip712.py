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

    def signable(self) -> SignableMessage:
        message = {
            "agreementId": self.agreement_id,
            "jobId": self.job_id,
            "purpose": self.purpose,
            "operation": self.operation,
            "paramsHash": self.params_hash,
            "privacyLoss": self.privacy_loss,
            "nonce": self.nonce,
            "deadline": self.deadline,
        }
        return encode_typed_data(_domain("Redlake UsageAgreements", self.chain_id, self.contract), USAGE_TYPES, message)


def recover_usage_signer(*, signature: bytes, usage: Usage) -> str:
    """The address that signed a Usage message (checked off chain before anything is reserved)."""
    return str(Account.recover_message(usage.signable(), signature=signature))


def sign_usage(*, key: bytes, usage: Usage) -> bytes:
    return bytes(Account.sign_message(usage.signable(), private_key=key).signature)
