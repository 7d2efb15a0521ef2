"""Wrapping a data key to an enclave's ephemeral public key (compact JWE, ECDH-ES+A256KW, A256GCM).

The custodian wraps the data key to the key ``verify`` bound in the evidence's report data; only
the enclave holding the private half can unwrap it. ``context`` (the attestation hash, a job id)
rides in the JWE protected header, which AES-GCM authenticates: a token unwrapped under another
context is refused, so a wrapped key cannot be replayed into a different job.

Keys travel as DER SubjectPublicKeyInfo (the bytes hashed into the report data). Accepted
curves: P-256, P-384, P-521 and X25519.
"""

from __future__ import annotations

import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from jwcrypto import jwe, jwk
from jwcrypto.common import JWException, base64url_decode

ALGORITHM = "ECDH-ES+A256KW"
ENCRYPTION = "A256GCM"
CONTEXT_HEADER = "redlake_ctx"
DATA_KEY_LENGTHS = frozenset({16, 24, 32, 64})
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)

EnclavePrivateKey = ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey


class UnwrapFailed(Exception):
    """The token is not for this key or this context, or was altered. Says nothing more."""


def generate_ephemeral_key() -> tuple[x25519.X25519PrivateKey, bytes]:
    """An enclave's one-run key pair: the private key and its DER SubjectPublicKeyInfo."""
    private = x25519.X25519PrivateKey.generate()
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def _recipient(public_key_der: bytes) -> jwk.JWK:
    try:
        key = serialization.load_der_public_key(public_key_der)
    except ValueError as exc:
        raise ValueError("the recipient key is not a DER SubjectPublicKeyInfo") from exc
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _CURVES):
        return jwk.JWK.from_pyca(key)
    if isinstance(key, x25519.X25519PublicKey):
        return jwk.JWK.from_pyca(key)
    raise ValueError("the recipient key must be P-256, P-384, P-521 or X25519")


def wrap_data_key(data_key: bytes, recipient_public_key: bytes, *, context: str) -> str:
    """A compact JWE carrying ``data_key`` to the holder of ``recipient_public_key``."""
    if len(data_key) not in DATA_KEY_LENGTHS:
        raise ValueError("a data key is 16, 24, 32 or 64 bytes")
    if not context:
        raise ValueError("a context is required")
    header = {"alg": ALGORITHM, "enc": ENCRYPTION, CONTEXT_HEADER: context}
    token = jwe.JWE(data_key, protected=json.dumps(header))
    token.add_recipient(_recipient(recipient_public_key))
    return str(token.serialize(compact=True))


def unwrap_data_key(token: str, private_key: EnclavePrivateKey, *, context: str) -> bytes:
    """The data key inside ``token``, which must have been wrapped to ``private_key``'s public
    half under ``context``."""
    # Only the compact form: its one header is the protected one, so the context read below is
    # the authenticated one (the JSON form could carry it unprotected).
    parts = token.split(".")
    if len(parts) != 5:
        raise UnwrapFailed
    try:
        header = json.loads(base64url_decode(parts[0]))
    except ValueError as exc:
        raise UnwrapFailed from exc
    if not isinstance(header, dict) or header.get(CONTEXT_HEADER) != context:
        raise UnwrapFailed
    if header.get("alg") != ALGORITHM or header.get("enc") != ENCRYPTION:
        raise UnwrapFailed
    parsed = jwe.JWE()
    parsed.allowed_algs = [ALGORITHM, ENCRYPTION]
    try:
        parsed.deserialize(token, key=jwk.JWK.from_pyca(private_key))
    except (JWException, ValueError, TypeError) as exc:
        raise UnwrapFailed from exc
    return bytes(parsed.payload)
