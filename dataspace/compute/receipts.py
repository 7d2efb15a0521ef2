"""The custodian's receipts and the result commitments the chain records.

A receipt is a canonical JSON document signed with the custodian's key (EIP-191, checkable with
any Ethereum tool). The chain records a salted commitment to each result, never a plain hash:
the chain is public and a released result has little entropy (a count, or a mean rounded to 6
significant digits, is found from a plain hash by trying every candidate); the salt travels
only in the receipt, to the job's consumer, who can show it to an auditor.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from dataspace.canonical import canonical_json
from dataspace.role_checks import current_role, require_role
from dataspace.roles import Role
from dataspace.vault import services as vault


def result_commitment(result: Any, salt: bytes) -> bytes:
    """What the chain records for a result: sha256(salt || canonical JSON of the result)."""
    return hashlib.sha256(salt + canonical_json(result)).digest()


@cache
def _custodian_account(spec: str) -> LocalAccount:
    if spec:
        account: LocalAccount = Account.from_key(spec)
        return account
    # ISSUE-12: the receipt key is kept sealed to the receipt keyring (created once; a race
    # between two processes keeps the first file). A development key file from before the
    # hierarchy is sealed as it was, so the custodian's address does not change.
    path = Path(settings.RECEIPT_KEY_FILE)
    if not path.exists() and current_role() != Role.DEV:
        # A custodian with a key of its own making would sign receipts matching no published
        # custodian address: outside development the key is provisioned, never made up.
        raise ImproperlyConfigured(
            f"The custodian role needs its receipt key: CUSTODIAN_KEY, or {path} sealed to the receipt keyring."
        )
    if not path.exists():
        legacy = settings.VAR_DIR / "custodian.key"
        key = bytes.fromhex(legacy.read_text().strip().removeprefix("0x")) if legacy.exists() else None
        written = vault.sealed_file_write(
            path=path, plaintext=key or bytes(Account.create().key), keyring=vault.KeyringName.RECEIPT
        )
        if written and legacy.exists():
            legacy.unlink()
    account = Account.from_key(_read_sealed(path))
    return account


def _read_sealed(path: Path) -> bytes:
    for _ in range(100):
        with contextlib.suppress(ValueError):  # created by another process a moment ago, not yet written
            if path.stat().st_size:
                return vault.sealed_file_read(path=path, keyring=vault.KeyringName.RECEIPT)
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty")


def custodian() -> LocalAccount:
    """The account whose key signs every receipt (``CUSTODIAN_KEY``, or the key sealed to the
    receipt keyring in ``RECEIPT_KEY_FILE``). Only the custodian (or the all-in-one ``dev``
    process) holds it."""
    require_role(Role.CUSTODIAN, purpose="The custodian's receipt key")
    return _custodian_account(settings.CUSTODIAN_KEY)


def receipt_sign(receipt: dict[str, Any]) -> dict[str, Any]:
    """The receipt with the custodian's signature over its canonical JSON added."""
    signature = custodian().sign_message(encode_defunct(canonical_json(receipt))).signature
    return {**receipt, "signature": "0x" + bytes(signature).hex()}


# ISSUE-14: a job settled in a batch is served with its receipt plus, under this key, the batch's
# id and root and the job's leaf and Merkle proof. The chain proves that part (verifyReceipt), so
# it is not signed and is not part of the hash the settlement pins: it is known only after the
# receipt is signed and the batch is built.
BATCH_FIELD = "batch"


def receipt_as_signed(receipt: dict[str, Any]) -> dict[str, Any]:
    """The receipt as the custodian signed it: what was shared, without the batch proof."""
    return {k: v for k, v in receipt.items() if k != BATCH_FIELD}


def receipt_signer(receipt: dict[str, Any]) -> str:
    """Who signed a receipt (for auditors and tests)."""
    body = {k: v for k, v in receipt.items() if k not in ("signature", BATCH_FIELD)}
    return str(Account.recover_message(encode_defunct(canonical_json(body)), signature=receipt["signature"]))


def attestation_hash(signed_receipt: dict[str, Any]) -> bytes:
    """What the chain records beside the result commitment: the signed receipt's SHA-256."""
    return hashlib.sha256(canonical_json(signed_receipt)).digest()


def settled_attestation(signed_receipt: dict[str, Any]) -> bytes:
    """What JobSettled.attestationHash pins for a receipt: an algorithm job's enclave attestation
    (ISSUE-13: the signed receipt names it under ``tee``), otherwise the receipt's own hash (a
    batch proof beside it, ISSUE-14, is left out)."""
    tee = signed_receipt.get("tee")
    if signed_receipt.get("engine") == "tee" and isinstance(tee, dict) and isinstance(tee.get("attestation_hash"), str):
        return bytes.fromhex(tee["attestation_hash"].removeprefix("0x"))
    return attestation_hash(receipt_as_signed(signed_receipt))
