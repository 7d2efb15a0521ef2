"""Compute engines behind one small interface. The HE engine runs on the ``he`` queue with public
contexts and ciphertexts only; a TEE engine would take the same place."""

from __future__ import annotations

import hashlib
from typing import Protocol

from dataspace.compute import keystore, selectors
from dataspace.compute.he.operations import EncryptedResult, get_operation
from dataspace.compute.he.store import read_series
from dataspace.compute.models import EncryptedStore, Job
from dataspace.vault import blobs


class Engine(Protocol):
    def run(self, job: Job) -> EncryptedResult: ...


class HEEngine:
    def run(self, job: Job) -> EncryptedResult:
        store = EncryptedStore.objects.get(pk=job.dataset_id)
        layout = selectors.encrypted_store_layout(store)
        contexts = keystore.public_contexts(store)
        if any(context.is_private() for context in contexts.values()):
            raise RuntimeError("an HE worker was handed a secret key")  # invariant 3; never reached
        operation = get_operation(job.operation)
        return operation.compute(job.params, layout, contexts, lambda key: read_series(layout, key))


def result_save(job: Job, result: EncryptedResult) -> tuple[str, str]:
    """Writes the result ciphertext (overwriting an earlier attempt's); returns (blob, sha256)."""
    data = result.to_bytes()
    name = f"jobs/{job.id}/result.ct"
    if blobs.exists(name):
        blobs.delete(name)
    with blobs.open_for_write(name) as sink:
        sink.write(data)
    return name, hashlib.sha256(data).hexdigest()
