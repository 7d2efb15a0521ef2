"""Sandbox evidence: signed by the local launcher key, refused unless the offer opts in, always
labelled SIMULATED; and the report-data binding every backend shares, exercised end to end."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from enclaves.attestation import (
    AttestationRefused,
    Policy,
    RefusalCode,
    TeeType,
    report_data_for,
    sandbox,
    verify,
)
from enclaves.attestation.evidence import Evidence
from enclaves.attestation.keywrap import generate_ephemeral_key
from tests.support.attestation import flip, utc

NOW = utc("2026-11-27T12:00:00Z")
BUNDLE = hashlib.sha256(b"approved algorithm bundle").digest()
MANIFEST = hashlib.sha256(b"job 41 manifest").digest()
OTHER_MANIFEST = hashlib.sha256(b"job 42 manifest").digest()
NONCE = bytes(range(32))


@pytest.fixture
def launcher(tmp_path: Path) -> Ed25519PrivateKey:
    return sandbox.load_or_create_launcher_key(tmp_path / "launcher.pem")


@pytest.fixture
def ephemeral_public_key() -> bytes:
    return generate_ephemeral_key()[1]


def _statement(
    key: Ed25519PrivateKey, ephemeral_public_key: bytes, *, nonce: bytes = NONCE, manifest: bytes = MANIFEST
) -> Evidence:
    raw = sandbox.sign_statement(
        key,
        measurement=BUNDLE,
        report_data=report_data_for(nonce, ephemeral_public_key, manifest),
        ephemeral_public_key=ephemeral_public_key,
        issued_at=NOW - timedelta(seconds=5),
    )
    return sandbox.evidence_from_statement(raw)


def _sandbox_policy(key: Ed25519PrivateKey) -> Policy:
    return Policy(
        allowed_tee_types=frozenset(),
        allowed_measurements=frozenset({(TeeType.SANDBOX, BUNDLE)}),
        allow_sandbox=True,
        sandbox_launcher_keys=frozenset({sandbox.launcher_public_key(key)}),
    )


HARDWARE_ONLY = Policy(
    allowed_tee_types=frozenset({TeeType.NITRO, TeeType.SGX, TeeType.TDX, TeeType.SEV_SNP}),
    allowed_measurements=frozenset({(TeeType.SANDBOX, BUNDLE), (TeeType.NITRO, BUNDLE)}),
)


def test_launcher_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "launcher.pem"
    first = sandbox.load_or_create_launcher_key(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = sandbox.load_or_create_launcher_key(path)
    assert sandbox.launcher_public_key(again) == sandbox.launcher_public_key(first)


def test_a_launcher_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "launcher.pem"
    sandbox.load_or_create_launcher_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError):
        sandbox.load_or_create_launcher_key(path)


def test_sandbox_evidence_is_refused_under_a_hardware_only_policy(
    launcher: Ed25519PrivateKey, ephemeral_public_key: bytes
) -> None:
    with pytest.raises(AttestationRefused) as refused:
        verify(_statement(launcher, ephemeral_public_key), HARDWARE_ONLY, NONCE, NOW, manifest_hash=MANIFEST)
    assert refused.value.code is RefusalCode.SANDBOX_NOT_ALLOWED


def test_sandbox_evidence_is_accepted_and_labelled_simulated_when_the_offer_allows_it(
    launcher: Ed25519PrivateKey, ephemeral_public_key: bytes
) -> None:
    verified = verify(
        _statement(launcher, ephemeral_public_key), _sandbox_policy(launcher), NONCE, NOW, manifest_hash=MANIFEST
    )

    assert verified.tee_type is TeeType.SANDBOX
    assert verified.simulated
    assert verified.label == "SIMULATED"
    assert verified.claims.measurement == BUNDLE
    assert verified.ephemeral_public_key == ephemeral_public_key
    receipt = verified.receipt()
    assert receipt["tee_type"] == "sandbox"
    assert receipt["label"] == "SIMULATED"
    assert receipt["attestation_hash"] == verified.attestation_hash().hex()


def test_the_attestation_hash_changes_with_the_tee_type(
    launcher: Ed25519PrivateKey, ephemeral_public_key: bytes
) -> None:
    verified = verify(
        _statement(launcher, ephemeral_public_key), _sandbox_policy(launcher), NONCE, NOW, manifest_hash=MANIFEST
    )
    passed_off_as_hardware = replace(verified, tee_type=TeeType.SGX)
    assert passed_off_as_hardware.attestation_hash() != verified.attestation_hash()


def test_evidence_signed_by_a_key_the_policy_does_not_list_is_refused(
    launcher: Ed25519PrivateKey, ephemeral_public_key: bytes
) -> None:
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(AttestationRefused) as refused:
        verify(
            _statement(stranger, ephemeral_public_key), _sandbox_policy(launcher), NONCE, NOW, manifest_hash=MANIFEST
        )
    assert refused.value.code is RefusalCode.CHAIN_UNTRUSTED


def test_evidence_naming_the_launcher_but_signed_by_another_key_is_refused(
    launcher: Ed25519PrivateKey, ephemeral_public_key: bytes
) -> None:
    genuine = _statement(launcher, ephemeral_public_key)
    domain, payload, _ = cbor2.loads(genuine.raw)
    forged_raw = cbor2.dumps([domain, payload, Ed25519PrivateKey.generate().sign(domain + payload)])
    with pytest.raises(AttestationRefused) as refused:
        verify(
            sandbox.evidence_from_statement(forged_raw),
            _sandbox_policy(launcher),
            NONCE,
            NOW,
            manifest_hash=MANIFEST,
        )
    assert refused.value.code is RefusalCode.SIGNATURE_INVALID


def test_evidence_bound_to_another_nonce_is_refused(launcher: Ed25519PrivateKey, ephemeral_public_key: bytes) -> None:
    evidence = _statement(launcher, ephemeral_public_key, nonce=b"\xff" * 32)
    with pytest.raises(AttestationRefused) as refused:
        verify(evidence, _sandbox_policy(launcher), NONCE, NOW, manifest_hash=MANIFEST)
    assert refused.value.code is RefusalCode.REPORT_DATA_MISMATCH


def test_evidence_bound_to_another_jobs_manifest_is_refused(
    launcher: Ed25519PrivateKey, ephemeral_public_key: bytes
) -> None:
    evidence = _statement(launcher, ephemeral_public_key, manifest=OTHER_MANIFEST)
    with pytest.raises(AttestationRefused) as refused:
        verify(evidence, _sandbox_policy(launcher), NONCE, NOW, manifest_hash=MANIFEST)
    assert refused.value.code is RefusalCode.REPORT_DATA_MISMATCH


def test_a_substituted_ephemeral_key_is_refused(launcher: Ed25519PrivateKey, ephemeral_public_key: bytes) -> None:
    """Someone in the middle swaps in their own key, hoping the data key is wrapped to it."""
    evidence = replace(_statement(launcher, ephemeral_public_key), ephemeral_public_key=generate_ephemeral_key()[1])
    with pytest.raises(AttestationRefused) as refused:
        verify(evidence, _sandbox_policy(launcher), NONCE, NOW, manifest_hash=MANIFEST)
    assert refused.value.code is RefusalCode.REPORT_DATA_MISMATCH


def test_expired_sandbox_evidence_is_refused(launcher: Ed25519PrivateKey, ephemeral_public_key: bytes) -> None:
    evidence = _statement(launcher, ephemeral_public_key)
    with pytest.raises(AttestationRefused) as refused:
        verify(evidence, _sandbox_policy(launcher), NONCE, NOW + timedelta(hours=1), manifest_hash=MANIFEST)
    assert refused.value.code is RefusalCode.EXPIRED


def test_hand_edited_claims_are_not_trusted(launcher: Ed25519PrivateKey, ephemeral_public_key: bytes) -> None:
    evidence = _statement(launcher, ephemeral_public_key)
    policy = replace(_sandbox_policy(launcher), allowed_measurements=frozenset({(TeeType.SANDBOX, b"other")}))
    lying = replace(evidence, claims=replace(evidence.claims, measurement=b"other"))
    with pytest.raises(AttestationRefused) as refused:
        verify(lying, policy, NONCE, NOW, manifest_hash=MANIFEST)
    assert refused.value.code is RefusalCode.MEASUREMENT_NOT_ALLOWED


def test_no_single_bit_flip_in_a_statement_is_accepted(
    launcher: Ed25519PrivateKey, ephemeral_public_key: bytes
) -> None:
    raw = _statement(launcher, ephemeral_public_key).raw
    policy = _sandbox_policy(launcher)
    accepted = []
    for position in range(len(raw)):
        try:
            verify(sandbox.evidence_from_statement(flip(raw, position)), policy, NONCE, NOW, manifest_hash=MANIFEST)
        except AttestationRefused:
            continue
        accepted.append(position)
    assert accepted == []


def test_sandbox_cannot_be_smuggled_in_as_an_allowed_tee_type() -> None:
    with pytest.raises(ValueError, match="allow_sandbox"):
        Policy(allowed_tee_types=frozenset({TeeType.SANDBOX}), allowed_measurements=frozenset())
    with pytest.raises(ValueError, match="launcher"):
        Policy(allowed_tee_types=frozenset(), allowed_measurements=frozenset(), allow_sandbox=True)
