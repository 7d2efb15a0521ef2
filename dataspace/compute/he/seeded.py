"""Seeded symmetric encryption: how the store builder writes ciphertexts about half the size.

A symmetric CKKS ciphertext is a pair (c0, c1) where c1 is a uniformly random polynomial. SEAL
can derive c1 from a PRNG seed and save the seed in place of c1 (``Encryptor.encrypt_symmetric``'s
``Serializable`` overload); ``Ciphertext.load`` regenerates c1 from the seed with the context's
parameters, so every reader (TenSEAL's ``ckks_vector_from``, the HE worker, the custodian) loads
a seeded ciphertext unchanged. This is standard SEAL: c1 is public randomness either way, so the
seeded form has the same security as the full one, under the same parameter sets.

TenSEAL 0.3.18 encrypts with the non-serializable overload only (full ciphertexts); its SEAL API
(``tenseal.sealapi``) exposes the serializable one. As for ``rotation``, the two modules share
only SEAL's serialization and ``sealapi`` reads and writes paths only: the secret key crosses
from the TenSEAL context into ``sealapi`` through an in-memory file (``memfd``, never a file
system), and each seeded ciphertext is saved to one and wrapped in TenSEAL's vector message.
Where no in-memory file can be made (not Linux), ``seeded_encryptor`` returns None and the
builder encrypts full ciphertexts as before: the secret key is never written to disk.

Measured (2-core machine): see ``bench/he.py`` (sizes and throughput of both forms).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import tenseal as ts
import tenseal.sealapi as sealapi

from dataspace.compute.he.params import ParamSet
from dataspace.compute.he.rotation import vector_message


@contextmanager
def _memory_file() -> Iterator[tuple[int, str]]:
    """An anonymous in-memory file: its descriptor and a path SEAL can open it by."""
    fd = os.memfd_create("redlake-he", os.MFD_CLOEXEC)
    try:
        yield fd, f"/proc/self/fd/{fd}"
    finally:
        os.ftruncate(fd, 0)
        os.close(fd)


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0)
    if len(data) != size:
        raise OSError(f"short read of a ciphertext: {len(data)} of {size} bytes")
    return data


class SeededEncryptor:
    """Encrypts vectors of one secret context (one parameter set) into seeded ciphertexts, each
    as TenSEAL vector bytes (what ``CKKSVector.serialize`` would give, with c1 as a seed). Not
    thread-safe: one per encryption process."""

    def __init__(self, context: ts.Context, params: ParamSet) -> None:
        if not context.is_private():
            raise ValueError("seeded encryption needs the secret key")
        self._params = params
        parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(params.poly_modulus_degree)
        parms.set_coeff_modulus(
            sealapi.CoeffModulus.Create(params.poly_modulus_degree, list(params.coeff_mod_bit_sizes))
        )
        self._seal = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
        secret_key = sealapi.SecretKey()
        with _memory_file() as (_, path):
            context.secret_key().data.save(path)
            secret_key.load(self._seal, path)  # SEAL checks the key against these parameters
        self._encryptor = sealapi.Encryptor(self._seal, secret_key)
        self._encoder = sealapi.CKKSEncoder(self._seal)
        self._fd = os.memfd_create("redlake-ct", os.MFD_CLOEXEC)
        self._path = f"/proc/self/fd/{self._fd}"
        self._closer = weakref.finalize(self, os.close, self._fd)  # also at interpreter exit

    def encrypt(self, values: Sequence[float]) -> bytes:
        """``values`` (at most one ciphertext's slots) as one seeded ciphertext vector."""
        if len(values) == 0 or len(values) > self._params.slots:
            raise ValueError(f"a vector holds 1 to {self._params.slots} values, not {len(values)}")
        plain = sealapi.Plaintext()
        # TenSEAL repeats a short vector cyclically over all slots (slot i holds value i mod n);
        # the same here, so a seeded vector decrypts to what TenSEAL's own would in every slot.
        tiled = np.resize(np.asarray(values, dtype=float), self._params.slots)
        self._encoder.encode(tiled.tolist(), self._params.scale, plain)
        self._encryptor.encrypt_symmetric(plain).save(self._path)  # the save truncates first
        return vector_message(_read_all(self._fd), len(values), self._params.scale)

    def close(self) -> None:
        self._closer()  # closes the descriptor once, whoever calls first


def seeded_encryptor(context: ts.Context, params: ParamSet) -> SeededEncryptor | None:
    """A seeded encryptor of ``context``, or None where the secret key cannot be handed to SEAL
    in memory (no ``memfd``): the caller then encrypts full ciphertexts."""
    if not hasattr(os, "memfd_create"):
        return None
    return SeededEncryptor(context, params)
