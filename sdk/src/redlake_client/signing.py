"""The consumer's own key: loaded from a key file, a keystore JSON or an environment variable,
used here and nowhere else. It never leaves this process; the platform only ever sees
signatures and addresses."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_account.signers.local import LocalAccount

from redlake_client.errors import KeyFileError

KEY_ENV = "REDLAKE_PRIVATE_KEY"
PASSPHRASE_ENV = "REDLAKE_KEYSTORE_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)


@dataclass(frozen=True)
class Signer:
    """A local account. ``repr`` never shows the key."""

    _account: LocalAccount
    source: str

    def __repr__(self) -> str:
        return f"Signer({self.address}, from {self.source})"

    @property
    def address(self) -> str:
        return str(self._account.address)

    def sign_message(self, text: str) -> str:
        """EIP-191 personal_sign of ``text`` (the wallet-ownership challenge)."""
        return "0x" + bytes(self._account.sign_message(encode_defunct(text=text)).signature).hex()

    def sign_typed_data(self, typed_data: dict[str, Any]) -> str:
        signable = encode_typed_data(typed_data["domain"], typed_data["types"], typed_data["message"])
        return "0x" + bytes(self._account.sign_message(signable).signature).hex()

    def sign_transaction(self, tx: dict[str, Any]) -> bytes:
        return bytes(self._account.sign_transaction(tx).raw_transaction)


def _check_private(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"No key file at {path}.") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):04o}): a private key must be 0600. "
            f"Run: chmod 600 {path}"
        )


def from_key_file(path: str | os.PathLike[str]) -> Signer:
    """A hex private key in a file only its owner can read (0600; refused otherwise)."""
    path = Path(path).expanduser()
    _check_private(path)
    text = path.read_text().strip()
    if text.startswith("{"):
        raise KeyFileError(f"{path} is a keystore JSON: use --keystore (it needs its passphrase).")
    try:
        return Signer(Account.from_key(text), f"key file {path}")
    except Exception:
        raise KeyFileError(f"{path} does not hold a valid hex private key.") from None


def from_keystore(path: str | os.PathLike[str], passphrase: str | None = None) -> Signer:
    """An encrypted keystore JSON (as geth, Foundry's ``cast wallet`` or eth-account write it).
    The passphrase comes from the argument or ``REDLAKE_KEYSTORE_PASSPHRASE``."""
    path = Path(path).expanduser()
    _check_private(path)
    if passphrase is None:
        passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is None:
        raise KeyFileError(f"The keystore {path} needs its passphrase (set {PASSPHRASE_ENV} or pass it).")
    try:
        keystore = json.loads(path.read_text())
    except ValueError:
        raise KeyFileError(f"{path} is not a keystore JSON.") from None
    try:
        key = Account.decrypt(keystore, passphrase)
    except ValueError:
        raise KeyFileError(f"Wrong passphrase for the keystore {path}.") from None
    return Signer(Account.from_key(key), f"keystore {path}")


def from_env(name: str = KEY_ENV) -> Signer:
    value = os.environ.get(name)
    if not value:
        raise KeyFileError(f"The environment variable {name} holds no private key.")
    try:
        return Signer(Account.from_key(value.strip()), f"${name}")
    except Exception:
        raise KeyFileError(f"{name} does not hold a valid hex private key.") from None


def load_signer(
    *, key_file: str | None = None, keystore: str | None = None, passphrase: str | None = None, env: bool = False
) -> Signer | None:
    """The signer the options name; None when none is named and ``REDLAKE_PRIVATE_KEY`` is unset."""
    if key_file:
        return from_key_file(key_file)
    if keystore:
        return from_keystore(keystore, passphrase)
    if env or os.environ.get(KEY_ENV):
        return from_env()
    return None
