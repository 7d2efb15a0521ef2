"""Root keys inside a PKCS#11 token (SoftHSM2): created non-extractable, data keys unwrapped
inside the token, rotation through it, and what a stolen database dump and blob volume give
without the token."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import serializers
from django.test import override_settings

from dataspace.catalog.uploads import seal_chunks
from dataspace.errors import ErrorCode
from dataspace.vault import keyrings
from dataspace.vault import services as vault
from dataspace.vault.models import DataKey
from tests.support import softhsm

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return softhsm.ensure_token(tmp_path_factory.mktemp("hsm-var"))


@pytest.fixture
def data_in_hsm(hsm: dict[str, str], settings: Any) -> Iterator[keyrings.RootKeyring]:
    """The data keyring's root in the token; the other keyrings stay file keyrings."""
    spec = softhsm.spec(softhsm.fresh_label())
    ring = keyrings.keyring_from_spec(spec, create=True)
    with override_settings(REDLAKE_KEYRINGS={**settings.REDLAKE_KEYRINGS, "data": spec}):
        vault._keyring_for.cache_clear()
        yield ring
    vault._keyring_for.cache_clear()


def test_root_key_is_created_non_extractable_in_the_token(data_in_hsm: keyrings.Pkcs11Keyring) -> None:
    flags = data_in_hsm.private_key_attributes(data_in_hsm.active_id())
    assert flags == {"sensitive": True, "extractable": False, "never_extractable": True}


def test_wrap_unwrap_round_trip_through_the_token(data_in_hsm: keyrings.RootKeyring) -> None:
    new_key = vault.data_key_generate()
    assert new_key.kek_id == data_in_hsm.active_id()
    stored = vault.data_key_save(new_key=new_key, purpose="dataset")
    assert vault.data_key_unwrap(DataKey.objects.get(pk=stored.pk)) == new_key.plaintext


def test_token_refuses_a_wrapped_key_moved_to_another_row(data_in_hsm: keyrings.RootKeyring) -> None:
    first = vault.data_key_save(new_key=vault.data_key_generate(), purpose="dataset")
    second = vault.data_key_save(new_key=vault.data_key_generate(), purpose="dataset")
    DataKey.objects.filter(pk=second.pk).update(wrapped_key=bytes(first.wrapped_key))
    with pytest.raises(vault.VaultIntegrityError) as error:
        vault.data_key_unwrap(DataKey.objects.get(pk=second.pk))
    assert error.value.code == ErrorCode.KEY_TAMPERED
    tampered = bytearray(first.wrapped_key)
    tampered[10] ^= 1
    DataKey.objects.filter(pk=first.pk).update(wrapped_key=bytes(tampered))
    with pytest.raises(vault.VaultIntegrityError):
        vault.data_key_unwrap(DataKey.objects.get(pk=first.pk))


def test_rotation_in_the_token_rewraps_and_keeps_content(data_in_hsm: keyrings.RootKeyring) -> None:
    upload = seal_chunks([b"age,cost\n", b"41,1234.5\n"], name="rows.csv")
    data_key = vault.data_key_save(new_key=upload.data_key, purpose="dataset")
    old_root = data_key.kek_id
    report = vault.kek_rotate(keyring=vault.KeyringName.DATA)
    assert report.active_kek_id != old_root
    assert report.rewrapped == 1
    data_key.refresh_from_db()
    assert data_key.kek_id == report.active_kek_id
    with vault.blob_open(blob_name=upload.blob_name, key=vault.data_key_unwrap(data_key)) as reader:
        assert reader.read() == b"age,cost\n41,1234.5\n"
    assert vault.kek_rotate(keyring=vault.KeyringName.DATA, create_new=False).rewrapped == 0


def test_rotation_mid_ingest_loses_nothing(data_in_hsm: keyrings.RootKeyring) -> None:
    # An upload sealed to the old root's public half, saved only after the rotation finished.
    upload = seal_chunks([b"x\n1\n2\n"], name="inflight.csv")
    report = vault.kek_rotate(keyring=vault.KeyringName.DATA)
    late = vault.data_key_save(new_key=upload.data_key, purpose="dataset")
    assert late.kek_id != report.active_kek_id  # still under the retired root, which still opens it
    with vault.blob_open(blob_name=upload.blob_name, key=vault.data_key_unwrap(late)) as reader:
        assert reader.read() == b"x\n1\n2\n"
    # The next pass picks it up.
    assert vault.kek_rotate(keyring=vault.KeyringName.DATA, create_new=False).rewrapped == 1
    late.refresh_from_db()
    assert late.kek_id == report.active_kek_id
    assert vault.data_key_unwrap(late) == upload.data_key.plaintext


def test_stolen_dump_and_blobs_without_the_token_yield_nothing(
    data_in_hsm: keyrings.RootKeyring, isolated_vault: Path, tmp_path: Path, settings: Any
) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}".encode()
    upload = seal_chunks([b"name,cost\n", canary + b",7\n"] * 50, name="canary.csv")
    data_key = vault.data_key_save(new_key=upload.data_key, purpose="dataset")
    wallet_key, sealed_wallet = vault.secret_seal(plaintext=b"\x42" * 32, purpose="wallet")
    dump = serializers.serialize("json", DataKey.objects.all()).encode() + sealed_wallet
    volume = b"".join(p.read_bytes() for p in (isolated_vault / "blobs").rglob("*") if p.is_file())
    for secret in (canary, upload.data_key.plaintext, b"\x42" * 32):
        assert secret not in dump
        assert secret not in volume
    # The thief's own keyrings (no token, none of the space's key files) open nothing.
    thief = tmp_path / "thief-keys"
    with override_settings(VAULT_KEK=f"file:{thief}", REDLAKE_KEYRINGS={k: "" for k in settings.REDLAKE_KEYRINGS}):
        vault._keyring_for.cache_clear()
        for row in (DataKey.objects.get(pk=data_key.pk), DataKey.objects.get(pk=wallet_key.pk)):
            with pytest.raises(vault.VaultIntegrityError) as error:
                vault.data_key_unwrap(row)
            assert error.value.code == ErrorCode.KEK_UNKNOWN
    vault._keyring_for.cache_clear()
    # ... and with the token, everything does: the dump was whole, only the keys were missing.
    assert vault.data_key_unwrap(DataKey.objects.get(pk=data_key.pk)) == upload.data_key.plaintext


def test_unwrap_latency_path_uses_the_token_not_a_copy(data_in_hsm: keyrings.RootKeyring) -> None:
    # The keyring object holds no private key material: only handles to objects in the token.
    assert isinstance(data_in_hsm, keyrings.Pkcs11Keyring)
    assert not any(isinstance(v, bytes) and len(v) > 100 for v in vars(data_in_hsm).values())
    assert os.environ.get("SOFTHSM2_CONF")
