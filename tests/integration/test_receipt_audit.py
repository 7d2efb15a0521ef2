"""An auditor checks release receipts with the chain alone (issue 12): the signer must be the
custodian CustodianRegistry held between the job's record and settlement blocks, and the
settlement must pin the receipt. Real anvil; the custodian registered by the deploy."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from dataspace.accounts.models import Role, Wallet
from dataspace.audit.receipts import receipt_verify
from dataspace.canonical import canonical_json
from dataspace.chain import agents, deploy
from dataspace.compute import receipts
from dataspace.errors import DomainError, ErrorCode
from tests.integration.test_chain_privacy import Market, agreement_for, confirmed, record, register
from tests.support.anvil import AnvilNode
from tests.support.space import TOKENS, funded_user
from tests.support.users import client_for, make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def trade(anvil: AnvilNode) -> Market:
    """A provider's registered dataset with a privacy limit and a funded consumer."""
    provider, _ = funded_user("hospital", Role.PROVIDER)
    consumer, _ = funded_user("lab", Role.CONSUMER, tokens=TOKENS)
    wallet = Wallet.objects.get(user=provider)
    market = Market(wallet.address, Wallet.objects.get(user=consumer), register(wallet))
    confirmed(
        agents.UsageAgreementsAgent().set_dataset_privacy_limit(
            key="limit", provider=market.provider, dataset_id=market.dataset, limit=10**9
        )
    )
    return market


def signed_by(key: bytes, body: dict[str, Any]) -> dict[str, Any]:
    """A receipt as the custodian makes one (``receipts.receipt_sign``), with any key."""
    body = {**body, "custodian": Account.from_key(key).address}
    signature = Account.sign_message(encode_defunct(canonical_json(body)), private_key=key).signature
    return {**body, "signature": "0x" + bytes(signature).hex()}


def settled_job(market: Market, agreement_id: int, nonce: int, key: bytes) -> dict[str, Any]:
    """A job recorded and settled on chain with a receipt signed by ``key``: the receipt."""
    job_id, write = record(market, agreement_id, nonce, loss=1000, params={"column": "age"})
    confirmed(write)
    receipt = signed_by(key, {"job_id": "0x" + job_id.hex(), "operation": "mean", "result_sha256": "0x" + "ab" * 32})
    confirmed(
        agents.UsageAgreementsAgent().settle(
            key=f"settle:{uuid.uuid4()}",
            job_id=job_id,
            result_hash=bytes.fromhex("ab" * 32),
            attestation_hash=receipts.attestation_hash(receipt),
        )
    )
    return receipt


def refusal(receipt: dict[str, Any]) -> tuple[ErrorCode, str]:
    with pytest.raises(DomainError) as error:
        receipt_verify(receipt=receipt)
    return error.value.code, error.value.message


def custodian_key() -> bytes:
    return bytes(receipts.custodian().key)


def test_a_receipt_of_the_registered_custodian_verifies(anvil: AnvilNode, trade: Market) -> None:
    market = trade
    agreement = agreement_for(market)
    receipt = settled_job(market, agreement, 0, custodian_key())
    check = receipt_verify(receipt=receipt)
    assert check.custodian == receipts.custodian().address
    assert check.custodian_valid_until is None
    assert check.custodian_valid_from <= check.recorded_block <= check.settled_block


def test_rotation_keeps_old_receipts_valid_and_refuses_the_old_key_afterwards(anvil: AnvilNode, trade: Market) -> None:
    market = trade
    agreement = agreement_for(market)
    old_key = custodian_key()
    before = settled_job(market, agreement, 0, old_key)
    new_key = bytes(Account.create().key)
    deploy.custodian_register(address=Account.from_key(new_key).address)
    history = agents.CustodianRegistryAgent().history()
    assert [p.address for p in history] == [receipts.custodian().address, Account.from_key(new_key).address]
    assert history[0].valid_until == history[1].valid_from
    # The old key's receipt was made while it was the custodian: still valid at its block.
    assert receipt_verify(receipt=before).custodian_valid_until == history[1].valid_from
    # The new key's receipts verify; the old key's new ones do not.
    assert receipt_verify(receipt=settled_job(market, agreement, 1, new_key)).custodian_valid_until is None
    code, message = refusal(settled_job(market, agreement, 2, old_key))
    assert code == ErrorCode.CUSTODIAN_UNKNOWN
    assert f"{receipts.custodian().address} was not the platform's custodian between blocks" in message


def test_unknown_custodian_and_foreign_receipts_are_refused_by_name(anvil: AnvilNode, trade: Market) -> None:
    market = trade
    agreement = agreement_for(market)
    forger = bytes(Account.create().key)
    forged = settled_job(market, agreement, 0, forger)
    assert refusal(forged) == (
        ErrorCode.CUSTODIAN_UNKNOWN,
        f"{Account.from_key(forger).address} has never been the platform's custodian (CustodianRegistry).",
    )
    genuine = settled_job(market, agreement, 1, custodian_key())
    altered = signed_by(custodian_key(), {**{k: v for k, v in genuine.items() if k != "signature"}, "operation": "sum"})
    assert refusal(altered)[0] == ErrorCode.RECEIPT_NOT_ON_CHAIN
    relabelled = {**genuine, "custodian": Account.from_key(forger).address}
    assert refusal(relabelled)[0] == ErrorCode.SIGNATURE_INVALID
    never = signed_by(custodian_key(), {"job_id": "0x" + "77" * 32})
    assert refusal(never) == (ErrorCode.RECEIPT_NOT_ON_CHAIN, f"The chain has no settlement of job 0x{'77' * 32}.")
    # The same through the auditor's door.
    auditor = client_for(make_user("auditor", Role.AUDITOR))
    refused = auditor.post("/api/audit/receipts/verify/", {"receipt": forged}, format="json")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "custodian_unknown"
    accepted = auditor.post("/api/audit/receipts/verify/", {"receipt": genuine}, format="json")
    assert accepted.status_code == 200, accepted.json()
    assert accepted.json()["custodian"] == receipts.custodian().address
