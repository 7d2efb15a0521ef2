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
import os
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


def result_commitment(result: Any, salt: bytes) -> bytes:
    """What the chain records for a result: sha256(salt || canonical JSON of the result)."""
    return hashlib.sha256(salt + canonical_json(result)).digest()


@cache
def _custodian_account(spec: str) -> LocalAccount:
    if spec:
        account: LocalAccount = Account.from_key(spec)
        return account
    if current_role() != Role.DEV:
        # A custodian with a key of its own making would sign receipts no auditor can check.
        raise ImproperlyConfigured("The custodian role needs CUSTODIAN_KEY (its receipt-signing key).")
    # Development default: a key file created once, readable only by this user.
    path = settings.VAR_DIR / "custodian.key"
    with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(Account.create().key.hex())
    account = Account.from_key(_wait_for_content(path))
    return account


def _wait_for_content(path: Path) -> str:
    for _ in range(100):
        if text := path.read_text().strip():
            return text
        time.sleep(0.01)  # created by another process a moment ago, not yet written
    raise RuntimeError(f"{path} is empty")


def custodian() -> LocalAccount:
    """The account whose key signs every receipt (``CUSTODIAN_KEY``, or a development key file).
    Only the custodian (or the all-in-one ``dev`` process) holds it."""
    require_role(Role.CUSTODIAN, purpose="The custodian's receipt key")
    return _custodian_account(settings.CUSTODIAN_KEY)


def receipt_sign(receipt: dict[str, Any]) -> dict[str, Any]:
    """The receipt with the custodian's signature over its canonical JSON added."""
    signature = custodian().sign_message(encode_defunct(canonical_json(receipt))).signature
    return {**receipt, "signature": "0x" + bytes(signature).hex()}


def receipt_signer(receipt: dict[str, Any]) -> str:
    """Who signed a receipt (for auditors and tests)."""
    body = {k: v for k, v in receipt.items() if k != "signature"}
    return str(Account.recover_message(encode_defunct(canonical_json(body)), signature=receipt["signature"]))


def attestation_hash(signed_receipt: dict[str, Any]) -> bytes:
    """What the chain records beside the result commitment: the signed receipt's SHA-256."""
    return hashlib.sha256(canonical_json(signed_receipt)).digest()
