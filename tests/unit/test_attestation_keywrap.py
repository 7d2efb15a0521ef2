"""Wrapping a data key to an enclave's ephemeral key, and the release flow it completes."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from enclaves.attestation import InMemoryNonceStore, Policy, TeeType, report_data_for, sandbox, verify
from enclaves.attestation.keywrap import UnwrapFailed, generate_ephemeral_key, unwrap_data_key, wrap_data_key
from tests.support.attestation import utc

NOW = utc("2026-11-27T12:00:00Z")
CONTEXT = "attestation:0123abcd"


def _p384() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    private = ec.generate_private_key(ec.SECP384R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.mark.parametrize("make_key", [generate_ephemeral_key, _p384], ids=["x25519", "p384"])
def test_a_wrapped_key_unwraps_with_the_private_half(make_key: object) -> None:
    private, public = make_key()  # type: ignore[operator]
    data_key = os.urandom(32)
    token = wrap_data_key(data_key, public, context=CONTEXT)

    assert data_key.hex() not in token
    assert unwrap_data_key(token, private, context=CONTEXT) == data_key


def test_another_key_cannot_unwrap() -> None:
    _, public = generate_ephemeral_key()
    stranger, _ = generate_ephemeral_key()
    token = wrap_data_key(os.urandom(32), public, context=CONTEXT)
    with pytest.raises(UnwrapFailed):
        unwrap_data_key(token, stranger, context=CONTEXT)


def test_a_token_for_another_context_is_refused() -> None:
    private, public = generate_ephemeral_key()
    token = wrap_data_key(os.urandom(32), public, context=CONTEXT)
    with pytest.raises(UnwrapFailed):
        unwrap_data_key(token, private, context="attestation:other")


def test_a_tampered_token_is_refused() -> None:
    private, public = generate_ephemeral_key()
    token = wrap_data_key(os.urandom(32), public, context=CONTEXT)
    header, encrypted_key, iv, ciphertext, tag = token.split(".")
    swapped = "A" if ciphertext[0] != "A" else "B"
    with pytest.raises(UnwrapFailed):
        unwrap_data_key(".".join([header, encrypted_key, iv, swapped + ciphertext[1:], tag]), private, context=CONTEXT)


def test_only_compact_tokens_are_read() -> None:
    private, _ = generate_ephemeral_key()
    with pytest.raises(UnwrapFailed):
        unwrap_data_key('{"protected": "e30", "ciphertext": ""}', private, context=CONTEXT)


def test_unsupported_recipient_keys_and_key_sizes_are_refused() -> None:
    rsa_public = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="P-256"):
        wrap_data_key(os.urandom(32), rsa_public, context=CONTEXT)
    with pytest.raises(ValueError, match="data key"):
        wrap_data_key(os.urandom(31), generate_ephemeral_key()[1], context=CONTEXT)


def test_release_flow_from_nonce_to_unwrapped_key(tmp_path: Path) -> None:
    """Custodian issues a nonce; the enclave (here the sandbox) binds it with its ephemeral key
    and the job manifest; the custodian consumes the nonce, verifies, and wraps the data key to
    the bound key under the attestation hash; only the enclave can unwrap it."""
    nonces = InMemoryNonceStore()
    manifest_hash = hashlib.sha256(b"job manifest").digest()
    bundle = hashlib.sha256(b"bundle").digest()
    launcher = sandbox.load_or_create_launcher_key(tmp_path / "launcher.pem")
    policy = Policy(
        allowed_tee_types=frozenset(),
        allowed_measurements=frozenset({(TeeType.SANDBOX, bundle)}),
        allow_sandbox=True,
        sandbox_launcher_keys=frozenset({sandbox.launcher_public_key(launcher)}),
    )

    nonce = nonces.issue(now=NOW)
    enclave_private, enclave_public = generate_ephemeral_key()
    statement = sandbox.sign_statement(
        launcher,
        measurement=bundle,
        report_data=report_data_for(nonce, enclave_public, manifest_hash),
        ephemeral_public_key=enclave_public,
        issued_at=NOW,
    )

    arrival = NOW + timedelta(seconds=2)
    nonces.consume(nonce, now=arrival)
    verified = verify(sandbox.evidence_from_statement(statement), policy, nonce, arrival, manifest_hash=manifest_hash)
    data_key = os.urandom(32)
    token = wrap_data_key(data_key, verified.ephemeral_public_key, context=verified.attestation_hash().hex())

    assert unwrap_data_key(token, enclave_private, context=verified.attestation_hash().hex()) == data_key
