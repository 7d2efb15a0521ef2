"""Root keys by purpose: each keyring wraps one kind of secret, with a public half and a private half.

Invariant kept here: wrapping needs only a keyring's *public* half, so a process can seal a new
data key (the web tier sealing an upload) without being able to open anything; unwrapping needs
the private half, which lives in a file or environment variable (development), or inside a
PKCS#11 token whose keys are created non-extractable (SoftHSM2 here, an HSM or a cloud KMS's
PKCS#11 module in production), where the unwrap itself happens.

The wrap is RSA-OAEP (RSA-3072, SHA-1 and MGF1-SHA-1: the one OAEP variant SoftHSM2 2.6
implements; OAEP's security does not rest on SHA-1's collision resistance) of the data key
followed by SHA-256 of its context, so a wrapped key copied onto another record fails to
unwrap. A one-byte scheme tag leads the wrapped bytes, so a backend with OAEP-SHA-256 can add
its own tag later without touching stored keys.

Keyring specs (``REDLAKE_KEYRING_<NAME>``):

- ``file:<dir>``: ``<id>.pem`` (0600, private), ``<id>.pub.pem`` and ``ACTIVE`` in a 0700
  directory; created on first use.
- ``env:<VAR>``: a base64 DER (PKCS#8) or PEM private key in ``VAR``, retired ones in
  ``VAR_PREVIOUS`` (comma-separated).
- ``pkcs11:token=<label>;label=<key label>[;module=<path>][;pin-env=<VAR>|pin-file=<path>]``.

A public half alone (``REDLAKE_KEYRING_<NAME>_PUBLIC``) is a PEM file path or ``env:<VAR>``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.core.exceptions import ImproperlyConfigured

RSA_BITS = 3072
SCHEME_RSA_OAEP_SHA1 = b"\x01"
KEY_BYTES = 32
# OAEP-SHA-1 is what SoftHSM2 2.6 implements; OAEP does not depend on collision resistance.
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


class KeyUnwrapError(Exception):
    """A wrapped key failed authentication (tampered, or bound to another record)."""


class UnknownKekError(Exception):
    """A wrapped key names a root key this keyring does not hold."""


class KeyringNotHeld(Exception):
    """This process holds only the public half of the keyring: it can seal, never open."""


def public_key_id(public_key: rsa.RSAPublicKey) -> str:
    """A root key's id: a hash of its public half, safe to store and print."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(b"redlake-root-key\x00" + der).hexdigest()[:16]


def _binding(context: bytes) -> bytes:
    return hashlib.sha256(b"redlake-wrap-context\x00" + context).digest()


def wrap_to_public(public_key: rsa.RSAPublicKey, data_key: bytes, *, context: bytes) -> bytes:
    return SCHEME_RSA_OAEP_SHA1 + public_key.encrypt(data_key + _binding(context), _OAEP)


def _check_unwrapped(plain: bytes, context: bytes) -> bytes:
    if len(plain) != KEY_BYTES + 32 or not hmac.compare_digest(plain[KEY_BYTES:], _binding(context)):
        raise KeyUnwrapError("wrapped key is bound to another record")
    return plain[:KEY_BYTES]


class RootKeyring(Protocol):
    """What the vault asks of a keyring; where its private half lives is the backend's business."""

    def active_id(self) -> str: ...

    def public_key(self) -> rsa.RSAPublicKey:
        """The active root's public half: what new keys are wrapped to."""
        ...

    def wrap(self, data_key: bytes, *, context: bytes) -> tuple[str, bytes]:
        """Wraps to the active root's public half; returns (root key id, wrapped bytes)."""
        ...

    def unwrap(self, kek_id: str, wrapped: bytes, *, context: bytes) -> bytes: ...

    def knows(self, kek_id: str) -> bool: ...

    def rotate(self) -> str:
        """Makes a new root key active (where the backend can create one); returns its id."""
        ...


class _PublicHalf:
    """Wrapping shared by every backend: a public-key operation on the host, no secret needed."""

    _public: rsa.RSAPublicKey
    _active: str

    def active_id(self) -> str:
        return self._active

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def wrap(self, data_key: bytes, *, context: bytes) -> tuple[str, bytes]:
        return self._active, wrap_to_public(self._public, data_key, context=context)


def _decode_scheme(wrapped: bytes) -> bytes:
    if wrapped[:1] != SCHEME_RSA_OAEP_SHA1:
        raise KeyUnwrapError("wrapped key has an unknown scheme")
    return wrapped[1:]


class PublicKeyring(_PublicHalf):
    """The public half alone: seals, never opens (the web tier's view of the ingest keyring)."""

    def __init__(self, public_key: rsa.RSAPublicKey, *, name: str):
        self._public = public_key
        self._active = public_key_id(public_key)
        self._name = name

    def unwrap(self, kek_id: str, wrapped: bytes, *, context: bytes) -> bytes:
        raise KeyringNotHeld(f"this process holds only the public half of the {self._name} keyring")

    def knows(self, kek_id: str) -> bool:
        return False

    def rotate(self) -> str:
        raise KeyringNotHeld(f"this process holds only the public half of the {self._name} keyring")


class _LocalKeyring(_PublicHalf):
    """Private halves held as ``cryptography`` objects (file and env backends)."""

    def _load(self, active: rsa.RSAPrivateKey, retired: list[rsa.RSAPrivateKey]) -> None:
        self._private = {public_key_id(k.public_key()): k for k in [*retired, active]}
        self._public = active.public_key()
        self._active = public_key_id(self._public)

    def knows(self, kek_id: str) -> bool:
        return kek_id in self._private

    def unwrap(self, kek_id: str, wrapped: bytes, *, context: bytes) -> bytes:
        if kek_id not in self._private:
            raise UnknownKekError(f"no root key with id {kek_id}")
        try:
            plain = self._private[kek_id].decrypt(_decode_scheme(wrapped), _OAEP)
        except ValueError:
            raise KeyUnwrapError("wrapped key failed authentication") from None
        return _check_unwrapped(plain, context)


def _private_from_bytes(data: bytes, *, what: str) -> rsa.RSAPrivateKey:
    try:
        key = (
            serialization.load_pem_private_key(data, password=None)
            if data.lstrip().startswith(b"-----")
            else serialization.load_der_private_key(base64.b64decode(data, validate=True), password=None)
        )
    except ValueError:
        raise ImproperlyConfigured(f"{what} must hold an RSA private key (PEM, or base64 DER PKCS#8)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured(f"{what} must hold an RSA private key")
    return key


def new_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def new_private_key_der() -> bytes:
    """A new root key as PKCS#8 DER (what ``env:<VAR>`` holds, base64-encoded)."""
    return new_private_key().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class FileKeyring(_LocalKeyring):
    """Development root keys: ``<id>.pem`` (0600) and ``<id>.pub.pem`` in a 0700 directory."""

    def __init__(self, directory: Path):
        self._dir = directory
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._locked():
            if not (self._dir / "ACTIVE").exists():
                self._create_key()
        self._reload()

    @contextlib.contextmanager
    def _locked(self) -> Any:
        # Two processes starting at once must not both generate (and race on ACTIVE).
        with (self._dir / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _reload(self) -> None:
        active_id = (self._dir / "ACTIVE").read_text().strip()
        keys = {p.name.removesuffix(".pem"): p.read_bytes() for p in self._dir.glob("*.pem") if ".pub" not in p.name}
        if active_id not in keys:
            raise ImproperlyConfigured(f"keyring {self._dir}: active root key {active_id} is missing")
        what = f"keyring {self._dir}"
        self._load(
            _private_from_bytes(keys[active_id], what=what),
            [_private_from_bytes(v, what=what) for k, v in keys.items() if k != active_id],
        )

    def _create_key(self) -> str:
        key = new_private_key()
        kek_id = public_key_id(key.public_key())
        fd = os.open(self._dir / f"{kek_id}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_key_pem(key))
        (self._dir / f"{kek_id}.pub.pem").write_bytes(public_key_pem(key.public_key()))
        tmp = self._dir / "ACTIVE.tmp"
        tmp.write_text(kek_id)
        tmp.replace(self._dir / "ACTIVE")
        return kek_id

    def unwrap(self, kek_id: str, wrapped: bytes, *, context: bytes) -> bytes:
        if kek_id not in self._private:
            self._reload()  # another process rotated since this one loaded the directory
        return super().unwrap(kek_id, wrapped, context=context)

    def rotate(self) -> str:
        with self._locked():
            new_id = self._create_key()
        self._reload()
        return new_id


class EnvKeyring(_LocalKeyring):
    """Root key from ``VAR`` (PEM or base64 DER); retired ones from ``VAR_PREVIOUS``."""

    def __init__(self, variable: str):
        value = os.environ.get(variable, "")
        if not value.strip():
            raise ImproperlyConfigured(f"{variable} is empty: it must hold the keyring's RSA private key")
        previous = [p for p in os.environ.get(f"{variable}_PREVIOUS", "").split(",") if p.strip()]
        self._load(
            _private_from_bytes(value.strip().encode(), what=variable),
            [_private_from_bytes(p.strip().encode(), what=f"{variable}_PREVIOUS") for p in previous],
        )

    def rotate(self) -> str:
        # The environment is the operator's to change: a new key in VAR, the old one moved to
        # VAR_PREVIOUS; rotation then only re-wraps.
        return self._active


# PKCS#11 ------------------------------------------------------------------------------------

_RETIRED = ":retired"
_libraries: dict[str, Any] = {}
_libraries_lock = threading.Lock()


def _pkcs11_library(module: str) -> Any:
    import pkcs11

    with _libraries_lock:
        if module not in _libraries:
            if not Path(module).exists():
                raise ImproperlyConfigured(f"PKCS#11 module {module} does not exist")
            _libraries[module] = pkcs11.lib(module)
        return _libraries[module]


def _parse_options(body: str, spec: str) -> dict[str, str]:
    options = {}
    for part in body.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ImproperlyConfigured(f"{spec!r}: expected key=value pairs separated by ';'")
        options[key.strip()] = value.strip()
    return options


class Pkcs11Keyring(_PublicHalf):
    """Root keys as RSA key pairs inside a PKCS#11 token, private halves non-extractable.

    The active pair carries the label; rotation relabels it ``<label>:retired`` and makes a new
    one. Each pair's CKA_ID is its key id, so a wrapped key finds the private half that opens
    it. Unwrapping is a C_Decrypt inside the token: the private key never leaves it.
    """

    def __init__(self, *, module: str, token: str, label: str, pin: str, create_if_missing: bool = False):
        import pkcs11
        from pkcs11 import exceptions as p11

        self._label = label
        self._token_label = token
        self._lock = threading.Lock()
        lib = _pkcs11_library(module)
        try:
            self._token = lib.get_token(token_label=token)
        except (p11.NoSuchToken, p11.MultipleTokensReturned):
            raise ImproperlyConfigured(f"HSM token {token!r} not found in PKCS#11 module {module}") from None
        self._pin = pin
        self._pid = -1
        try:
            self._open_session()
        except p11.PinIncorrect:
            raise ImproperlyConfigured(f"HSM token {token!r}: wrong PIN") from None
        except p11.PinLocked:
            raise ImproperlyConfigured(f"HSM token {token!r}: PIN locked") from None
        self._mechanism = pkcs11.Mechanism.RSA_PKCS_OAEP
        self._mechanism_param = (pkcs11.Mechanism.SHA_1, pkcs11.MGF.SHA1, None)
        self._reload()
        if not self._private and create_if_missing:
            self.create_key()

    def _require_active(self) -> None:
        # A token without a root key yet is not a startup error: `vault init-keyrings` makes one.
        if not hasattr(self, "_public"):
            self._reload()
        if not hasattr(self, "_public"):
            raise ImproperlyConfigured(
                f"HSM token {self._token_label!r} has no root key labelled {self._label!r}: "
                "run 'manage.py vault init-keyrings'"
            )

    def active_id(self) -> str:
        self._require_active()
        return self._active

    def public_key(self) -> rsa.RSAPublicKey:
        self._require_active()
        return self._public

    def wrap(self, data_key: bytes, *, context: bytes) -> tuple[str, bytes]:
        self._require_active()
        return super().wrap(data_key, context=context)

    def _open_session(self) -> None:
        # A forked worker must not share its parent's session.
        from pkcs11 import exceptions as p11

        try:
            self._session = self._token.open(user_pin=self._pin, rw=True)
        except p11.UserAlreadyLoggedIn:
            # PKCS#11 logs in per application: another keyring on this token already did.
            self._session = self._token.open(rw=True)
        self._pid = os.getpid()

    def _session_here(self) -> Any:
        if self._pid != os.getpid():
            self._open_session()
        return self._session

    def _reload(self) -> None:
        from pkcs11 import Attribute, KeyType, ObjectClass

        session = self._session_here()
        self._private: dict[str, Any] = {}
        active_public = None
        for label in (self._label, self._label + _RETIRED):
            for key in session.get_objects(
                {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.LABEL: label}
            ):
                self._private[bytes(key[Attribute.ID]).decode()] = key
        actives = sorted(
            session.get_objects(
                {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.LABEL: self._label}
            ),
            key=lambda k: bytes(k[Attribute.ID]),
        )
        if actives:
            active_public = actives[0]
            numbers = rsa.RSAPublicNumbers(
                int.from_bytes(active_public[Attribute.PUBLIC_EXPONENT], "big"),
                int.from_bytes(active_public[Attribute.MODULUS], "big"),
            )
            self._public = numbers.public_key()
            self._active = public_key_id(self._public)

    def knows(self, kek_id: str) -> bool:
        return kek_id in self._private

    def unwrap(self, kek_id: str, wrapped: bytes, *, context: bytes) -> bytes:
        from pkcs11 import exceptions as p11

        with self._lock:
            if kek_id not in self._private:
                self._reload()  # rotated by another process since we looked
            if kek_id not in self._private:
                raise UnknownKekError(f"no root key with id {kek_id} in HSM token {self._token_label!r}")
            self._session_here()
            try:
                plain = self._private[kek_id].decrypt(
                    _decode_scheme(wrapped), mechanism=self._mechanism, mechanism_param=self._mechanism_param
                )
            except (p11.EncryptedDataInvalid, p11.EncryptedDataLenRange, p11.MechanismInvalid):
                raise KeyUnwrapError("wrapped key failed authentication") from None
            except p11.PKCS11Error as exc:
                # SoftHSM2 answers a failed OAEP decoding with a generic error.
                raise KeyUnwrapError(f"wrapped key failed authentication ({type(exc).__name__})") from None
        return _check_unwrapped(bytes(plain), context)

    def create_key(self) -> str:
        """A new key pair inside the token, private half sensitive and non-extractable."""
        from pkcs11 import Attribute, KeyType

        with self._lock:
            session = self._session_here()
            public, private = session.generate_keypair(
                KeyType.RSA,
                RSA_BITS,
                store=True,
                label=self._label + ".new",
                public_template={Attribute.ENCRYPT: True, Attribute.WRAP: True, Attribute.VERIFY: False},
                private_template={
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.DECRYPT: True,
                    Attribute.UNWRAP: True,
                    Attribute.SIGN: False,
                    Attribute.PRIVATE: True,
                },
            )
            numbers = rsa.RSAPublicNumbers(
                int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
                int.from_bytes(public[Attribute.MODULUS], "big"),
            )
            new_id = public_key_id(numbers.public_key())
            for obj in (public, private):
                obj[Attribute.ID] = new_id.encode()
            # Retire the old active pair, then promote the new one.
            for old in session.get_objects({Attribute.LABEL: self._label}):
                old[Attribute.LABEL] = self._label + _RETIRED
            for obj in (public, private):
                obj[Attribute.LABEL] = self._label
            self._reload()
        return new_id

    def rotate(self) -> str:
        return self.create_key()

    def private_key_attributes(self, kek_id: str) -> dict[str, bool]:
        """For tests and the operator's checks: the flags the token holds on a private half."""
        from pkcs11 import Attribute

        key = self._private[kek_id]
        return {
            "sensitive": bool(key[Attribute.SENSITIVE]),
            "extractable": bool(key[Attribute.EXTRACTABLE]),
            "never_extractable": bool(key[Attribute.NEVER_EXTRACTABLE]),
        }


def pkcs11_options(spec: str) -> dict[str, str]:
    options = _parse_options(spec.partition(":")[2], spec)
    if not options.get("token") or not options.get("label"):
        raise ImproperlyConfigured(f"{spec!r}: a pkcs11 keyring needs token=<token label>;label=<key label>")
    return options


def pkcs11_pin(options: dict[str, str], spec: str) -> str:
    """The token's user PIN: ``pin-file=``, ``pin-env=<VAR>``, else ``REDLAKE_HSM_PIN`` or the file
    ``REDLAKE_HSM_PIN_FILE`` names (what ``scripts/softhsm.sh`` exports)."""
    variable = options.get("pin-env", "REDLAKE_HSM_PIN")
    pin_file = options.get("pin-file", "")
    if not pin_file and not os.environ.get(variable) and "pin-env" not in options:
        pin_file = os.environ.get("REDLAKE_HSM_PIN_FILE", "")
    if pin_file:
        try:
            return Path(pin_file).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{spec!r}: cannot read the PIN file ({exc.strerror})") from None
    if pin := os.environ.get(variable, ""):
        return pin
    raise ImproperlyConfigured(f"{spec!r}: the HSM PIN is not set ({variable} is empty)")


def keyring_from_spec(spec: str, *, create: bool = False) -> RootKeyring:
    """The keyring a spec names. ``create`` makes the first PKCS#11 root key where none exists
    (the operator's ``vault init-keyrings``); file keyrings create theirs on first use."""
    scheme, _, target = spec.partition(":")
    if scheme == "file" and target:
        return FileKeyring(Path(target))
    if scheme == "env" and target:
        return EnvKeyring(target)
    if scheme == "pkcs11":
        options = pkcs11_options(spec)
        module = options.get("module") or os.environ.get("REDLAKE_PKCS11_MODULE", DEFAULT_PKCS11_MODULE)
        return Pkcs11Keyring(
            module=module,
            token=options["token"],
            label=options["label"],
            pin=pkcs11_pin(options, spec),
            create_if_missing=create,
        )
    raise ImproperlyConfigured(
        f"{spec!r}: expected 'file:<directory>', 'env:<VARIABLE>' or 'pkcs11:token=...;label=...'"
    )


def public_keyring_from_spec(spec: str, *, name: str) -> PublicKeyring:
    """A public half: a PEM file, or ``env:<VAR>`` holding PEM (or base64 DER)."""
    scheme, _, target = spec.partition(":")
    try:
        if scheme == "env":
            raw = os.environ.get(target, "").strip().encode()
            data = raw if raw.startswith(b"-----") else base64.b64decode(raw, validate=True)
        else:
            data = Path(spec).read_bytes()
        key = (
            serialization.load_pem_public_key(data)
            if data.lstrip().startswith(b"-----")
            else serialization.load_der_public_key(data)
        )
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"the {name} keyring's public half {spec!r} cannot be read: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ImproperlyConfigured(f"the {name} keyring's public half {spec!r} is not an RSA public key")
    return PublicKeyring(key, name=name)
