"""A custodial wallet's relayed signature is made by the chain signer when it sends the write:
the outbox keeps the typed data, and what it signs is what the consumer's own key would sign."""

from __future__ import annotations

from eth_account import Account

from dataspace.chain import eip712, outbox


def usage() -> eip712.Usage:
    return eip712.Usage(
        chain_id=31337,
        contract="0x" + "11" * 20,
        agreement_id=7,
        job_id=b"\x02" * 32,
        purpose=b"\x03" * 32,
        operation=b"\x04" * 32,
        params_hash=b"\x05" * 32,
        privacy_loss=1234,
        nonce=9,
        deadline=1_900_000_000,
    )


def test_the_marker_carries_typed_data_a_wallet_signs_as_its_own_key_would() -> None:
    account = Account.create()
    marker = outbox.signature_by(signer=account.address, typed_data=usage().typed_data())
    request = marker[outbox.SIGN_MARKER]
    signed = eip712.sign_typed_data(key=bytes(account.key), typed_data=request["typed_data"])
    assert signed == eip712.sign_usage(key=bytes(account.key), usage=usage())
    assert eip712.recover_usage_signer(signature=signed, usage=usage()) == account.address


def test_the_marker_holds_no_key_material() -> None:
    account = Account.create()
    marker = outbox.signature_by(signer=account.address, typed_data=usage().typed_data())
    assert bytes(account.key).hex() not in repr(marker)
