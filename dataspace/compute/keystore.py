"""Where a dataset's CKKS keys live. Public contexts are plain blobs any HE worker loads; secret
contexts are sealed by the vault (a data key wrapped to the CKKS keyring) and opened only by the custodian
(``custody.py``), the single code path that unwraps a CKKS secret key."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

from dataspace.compute.he.keys import KeyPair, load_public_context
from dataspace.compute.models import EncryptedStore, HEKey
from dataspace.vault import blobs
from dataspace.vault import services as vault

_CACHE_SIZE = 4  # contexts are tens of MB; a worker keeps the few datasets it is busy with
_cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
_cache_lock = threading.Lock()
# One load at a time: a job that needs the context the warm-up is loading waits for that load
# instead of making a second (a worker process runs one task at a time besides).
_loading = threading.Lock()


def keys_save(*, store: EncryptedStore, keys: KeyPair) -> HEKey:
    public_blob = f"{store.blob_prefix}/public-{keys.level}.ctx"
    with blobs.open_for_write(public_blob) as sink:
        sink.write(keys.public_context)
    secret_blob = secret_blob_name(store, keys.level)
    new_key = vault.data_key_generate(keyring=vault.KeyringName.CKKS)  # ISSUE-12: the CKKS root
    with vault.BlobSealer(key=new_key.plaintext, blob_name=secret_blob) as sealer:
        sealer.write(keys.secret_context)
    return HEKey.objects.create(
        store=store,
        level=keys.level,
        public_blob=public_blob,
        public_sha256=hashlib.sha256(keys.public_context).hexdigest(),
        secret_blob=secret_blob,
        data_key=vault.data_key_save(new_key=new_key, purpose="ckks-secret"),
    )


def public_contexts(store: EncryptedStore) -> dict[str, Any]:
    """The store's public contexts (no secret key), loaded once per worker process."""
    return {key.level: _public_context(key.public_blob, key.public_sha256) for key in store.keys.all()}


def _public_context(blob_name: str, sha256: str) -> Any:
    cache_key = (blob_name, sha256)
    context = _cached(cache_key)
    if context is not None:
        return context
    with _loading:
        context = _cached(cache_key)
        if context is None:
            context = _load_public_context(blob_name, sha256)
            with _cache_lock:
                _cache[cache_key] = context
                while len(_cache) > _CACHE_SIZE:
                    _cache.popitem(last=False)
    return context


def _load_public_context(blob_name: str, sha256: str) -> Any:
    with blobs.open_for_read(blob_name) as source:
        data = source.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise vault.VaultIntegrityError(f"public context {blob_name} does not match its hash")
    return load_public_context(data)


def _cached(cache_key: tuple[str, str]) -> Any:
    with _cache_lock:
        context = _cache.get(cache_key)
        if context is not None:
            _cache.move_to_end(cache_key)
        return context


def secret_blob_name(store: EncryptedStore, level: str) -> str:
    return f"{store.blob_prefix}/secret-{level}.ctx.sealed"


def keys_delete(store: EncryptedStore) -> None:
    # By name, not by reading ``secret_blob``: the web tier shreds a deleted dataset's store and
    # may not read where secret contexts are sealed (dataspace.db_grants).
    for key in store.keys.all():
        vault.blob_delete(key.public_blob)
        vault.blob_delete(secret_blob_name(store, key.level))
