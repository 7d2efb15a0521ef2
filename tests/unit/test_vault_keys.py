"""Data keys under their keyring's root key: wrapping, tamper detection, rotation without
re-encryption, and keys wrapped by the single KEK of before the hierarchy."""

from __future__ import annotations

import base64
import io
import os
import stat
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings

from dataspace.accounts.models import Role
from dataspace.accounts.services import user_create
from dataspace.catalog import services
from dataspace.catalog.models import Dataset, Ingest
from dataspace.catalog.uploads import seal_chunks
from dataspace.errors import ErrorCode
from dataspace.vault import kek, keyrings
from dataspace.vault import services as vault
from dataspace.vault.models import DataKey

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def sealed_blob(content: bytes) -> tuple[DataKey, str]:
    new_key = vault.data_key_generate()
    with vault.BlobSealer(key=new_key.plaintext, blob_name="datasets/test.sealed") as sealer:
        sealer.write(content)
    return vault.data_key_save(new_key=new_key, purpose="dataset"), "datasets/test.sealed"


def read_blob(data_key: DataKey, name: str) -> bytes:
    with vault.blob_open(blob_name=name, key=vault.data_key_unwrap(data_key)) as reader:
        return reader.read()


def test_keyring_file_is_private(isolated_vault: Path) -> None:
    vault.data_key_generate()
    key_files = [p for p in (isolated_vault / "keys" / "data").glob("*.pem") if ".pub" not in p.name]
    assert len(key_files) == 1
    assert stat.S_IMODE(key_files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((isolated_vault / "keys" / "data").stat().st_mode) == 0o700


def test_data_key_is_stored_only_wrapped() -> None:
    new_key = vault.data_key_generate()
    stored = vault.data_key_save(new_key=new_key, purpose="dataset")
    assert new_key.plaintext not in bytes(DataKey.objects.get(pk=stored.pk).wrapped_key)
    assert vault.data_key_unwrap(DataKey.objects.get(pk=stored.pk)) == new_key.plaintext


def test_tampered_wrapped_key_is_reported() -> None:
    stored = vault.data_key_save(new_key=vault.data_key_generate(), purpose="dataset")
    wrapped = bytearray(stored.wrapped_key)
    wrapped[-1] ^= 0x80
    DataKey.objects.filter(pk=stored.pk).update(wrapped_key=bytes(wrapped))
    with pytest.raises(vault.VaultIntegrityError) as error:
        vault.data_key_unwrap(DataKey.objects.get(pk=stored.pk))
    assert error.value.code == ErrorCode.KEY_TAMPERED


def test_wrapped_key_copied_to_another_row_is_reported() -> None:
    first = vault.data_key_save(new_key=vault.data_key_generate(), purpose="dataset")
    second = vault.data_key_save(new_key=vault.data_key_generate(), purpose="dataset")
    DataKey.objects.filter(pk=second.pk).update(wrapped_key=bytes(first.wrapped_key))
    with pytest.raises(vault.VaultIntegrityError):
        vault.data_key_unwrap(DataKey.objects.get(pk=second.pk))


def test_tampered_blob_is_reported_never_read(isolated_vault: Path) -> None:
    data_key, name = sealed_blob(os.urandom(3 * 1024 * 1024))
    path = isolated_vault / "blobs" / name
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(vault.VaultIntegrityError) as error:
        read_blob(data_key, name)
    assert error.value.code == ErrorCode.BLOB_TAMPERED


def test_failed_sealing_leaves_no_blob(isolated_vault: Path) -> None:
    new_key = vault.data_key_generate()

    def interrupted_upload() -> None:
        with vault.BlobSealer(key=new_key.plaintext, blob_name="uploads/x.sealed") as sealer:
            sealer.write(b"partial")
            raise RuntimeError("upload broke")

    with pytest.raises(RuntimeError):
        interrupted_upload()
    assert not (isolated_vault / "blobs" / "uploads" / "x.sealed").exists()


def test_rotation_rewraps_keys_without_touching_content(isolated_vault: Path) -> None:
    content = os.urandom(2 * 1024 * 1024 + 17)
    data_key, name = sealed_blob(content)
    blob_before = (isolated_vault / "blobs" / name).read_bytes()
    old_kek = data_key.kek_id
    out = io.StringIO()
    call_command("vault", "rotate-kek", stdout=out)
    data_key.refresh_from_db()
    assert data_key.kek_id != old_kek
    assert "data: active root key" in out.getvalue()
    assert "re-wrapped 1 data keys" in out.getvalue()
    assert (isolated_vault / "blobs" / name).read_bytes() == blob_before  # content not re-encrypted
    assert read_blob(data_key, name) == content
    # Re-running is a no-op: everything is already under the active KEK.
    assert vault.kek_rotate(create_new=False).rewrapped == 0


def test_env_keyring_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = (base64.b64encode(keyrings.new_private_key_der()).decode() for _ in range(2))
    monkeypatch.setenv("TEST_KEK_DATA", old)
    with override_settings(VAULT_KEK="env:TEST_KEK"):
        vault._keyring_for.cache_clear()
        data_key, name = sealed_blob(b"rows")
        monkeypatch.setenv("TEST_KEK_DATA", new)
        monkeypatch.setenv("TEST_KEK_DATA_PREVIOUS", old)
        vault._keyring_for.cache_clear()
        report = vault.kek_rotate(create_new=False)
        assert report.rewrapped == 1
        monkeypatch.delenv("TEST_KEK_DATA_PREVIOUS")  # the old key can now be destroyed
        vault._keyring_for.cache_clear()
        data_key.refresh_from_db()
        assert read_blob(data_key, name) == b"rows"
    vault._keyring_for.cache_clear()


def test_key_wrapped_by_the_old_single_kek_unwraps_and_rotates_to_its_root(isolated_vault: Path) -> None:
    legacy = os.urandom(32)
    legacy_dir = isolated_vault / "keys"
    (legacy_dir / f"{kek.kek_fingerprint(legacy)}.key").write_bytes(legacy)
    (legacy_dir / "ACTIVE").write_text(kek.kek_fingerprint(legacy))
    vault._legacy_for.cache_clear()
    key_id, plaintext = uuid.uuid4(), os.urandom(32)
    old = DataKey.objects.create(
        id=key_id,
        purpose="wallet",
        keyring="wallet",
        kek_id=kek.kek_fingerprint(legacy),
        wrapped_key=kek.wrap_legacy(legacy, plaintext, vault._context(key_id)),
    )
    assert vault.data_key_unwrap(old) == plaintext
    assert vault.kek_rotate(keyring=vault.KeyringName.DATA, create_new=False).rewrapped == 0  # another root's
    assert vault.kek_rotate(keyring=vault.KeyringName.WALLET, create_new=False).rewrapped == 1
    old.refresh_from_db()
    assert old.kek_id == vault.keyring(vault.KeyringName.WALLET).active_id()
    assert vault.data_key_unwrap(old) == plaintext
    vault._legacy_for.cache_clear()


def test_unknown_kek_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = vault.data_key_save(new_key=vault.data_key_generate(), purpose="dataset")
    DataKey.objects.filter(pk=stored.pk).update(kek_id="0000000000000000")
    with pytest.raises(vault.VaultIntegrityError) as error:
        vault.data_key_unwrap(DataKey.objects.get(pk=stored.pk))
    assert error.value.code == ErrorCode.KEK_UNKNOWN


def test_small_secret_round_trip() -> None:
    data_key, sealed = vault.secret_seal(plaintext=b"\x01" * 32, purpose="wallet")
    assert vault.secret_open(data_key=data_key, sealed=sealed) == b"\x01" * 32
    with pytest.raises(vault.VaultIntegrityError):
        vault.secret_open(data_key=data_key, sealed=sealed[:-1] + bytes([sealed[-1] ^ 1]))


def test_an_upload_tampered_after_its_head_fails_its_ingest_and_leaves_nothing(isolated_vault: Path) -> None:
    # Issue 14: the ingest authenticates chunks as the parser reads them (on a helper thread) and
    # no longer decrypts the blob a second time; a chunk far past the head must still be caught.
    provider = user_create(username="tamper", password="tamper-password-1", roles=[Role.PROVIDER])
    content = b"a,b\n" + b"".join(b"%d,%d\n" % (i, i % 7) for i in range(600_000))
    upload = seal_chunks([content], name="t.csv")
    ingest = services.ingest_start(provider=provider, upload=upload, metadata=services.DatasetMetadata(title="t"))
    path = isolated_vault / "blobs" / upload.blob_name
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 1  # in the last chunk: the head check never read it
    path.write_bytes(bytes(raw))
    assert services.ingest_run(ingest_id=ingest.id) is None
    failed = Ingest.objects.get(pk=ingest.id)
    assert (failed.status, failed.error_code) == (Ingest.Status.FAILED, ErrorCode.BLOB_TAMPERED)
    assert not path.exists()
    assert not Dataset.objects.exists()
    assert not DataKey.objects.filter(pk=ingest.data_key_id).exists()


def test_keyrings_warm_opens_every_held_keyring_once(isolated_vault: Path) -> None:
    # ISSUE-14: a worker process opens its keyrings as it starts; its first job then loads none.
    vault._keyring_for.cache_clear()
    opened = vault.keyrings_warm()
    assert opened == [str(name) for name in vault.KeyringName]  # the development shorthand holds all
    loads = vault._keyring_for.cache_info().misses
    assert read_blob(*sealed_blob(b"rows")) == b"rows"  # wraps and unwraps under the data keyring
    for name in vault.KeyringName:
        vault.keyring(name)
    assert vault._keyring_for.cache_info().misses == loads
    vault._keyring_for.cache_clear()


def test_keyrings_warm_reports_a_broken_keyring_and_leaves_it_to_first_use(
    isolated_vault: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (isolated_vault / "keys" / "data" / "ACTIVE").write_text("missing")
    vault._keyring_for.cache_clear()
    vault.keyrings_warm_logged()  # logs, never raises: the worker process starts regardless
    assert "opening the keyrings ahead of the first task failed" in caplog.text
    with pytest.raises(Exception, match="active root key missing is missing"):
        vault.keyring(vault.KeyringName.DATA)
    vault._keyring_for.cache_clear()
