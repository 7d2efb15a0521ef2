"""Rotating a CKKS vector's slots with a public context's Galois keys: how a worker brings a packed
tail to slot 0 (``evaluation``).

TenSEAL 0.3.18 rotates only inside its own operations (rotate-and-sum, matrix products) and does not
expose a rotation; the SEAL API it ships (``tenseal.sealapi``) does. The two are separate extension
modules that share no objects, only SEAL's serialization, and ``sealapi`` reads and writes files
only: a rotation loads the vector's ciphertext into ``sealapi`` from a file, rotates it there, and
wraps the rotated ciphertext in TenSEAL's vector message (``CKKSVectorProto``: sizes, ciphertexts,
scale) again. Both sides check what they load against their parameters (SEAL's ``load`` refuses a
ciphertext of other parameters). The Galois keys are the ones the public context already holds for
rotate-and-sum (every power-of-two step; SEAL composes any other step from them).

Measured (2-core machine, products level): loading the context's Galois keys ~0.15 s, once per
context and process; one rotation ~10 ms with the file round trips.
"""

from __future__ import annotations

import struct
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import tenseal as ts
import tenseal.sealapi as sealapi

from dataspace.compute.he.params import ParamSet

_CACHED = 4  # rotators kept per process (one per context: an HE worker caches a few datasets' contexts)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def vector_message(ciphertext: bytes, size: int, scale: float) -> bytes:
    """TenSEAL's ``CKKSVectorProto`` of one ciphertext: sizes (1, packed), ciphertexts (2), scale (3)."""
    sizes = _varint(size)
    return b"".join(
        [
            b"\x0a" + _varint(len(sizes)) + sizes,
            b"\x12" + _varint(len(ciphertext)) + ciphertext,
            b"\x19" + struct.pack("<d", scale),
        ]
    )


class Rotator:
    """Rotations of vectors of one public context (and so one parameter set)."""

    def __init__(self, context: ts.Context, params: ParamSet) -> None:
        if not context.has_galois_keys():
            raise ValueError("the context holds no Galois keys")
        self._context = context
        self._params = params
        self._directory = tempfile.TemporaryDirectory(prefix="redlake-rotate-")
        self._path = Path(self._directory.name)
        parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(params.poly_modulus_degree)
        parms.set_coeff_modulus(
            sealapi.CoeffModulus.Create(params.poly_modulus_degree, list(params.coeff_mod_bit_sizes))
        )
        self._seal = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
        keys = self._path / "galois"
        context.galois_keys().data.save(str(keys))
        self._keys = sealapi.GaloisKeys()
        self._keys.load(self._seal, str(keys))
        keys.unlink()
        self._evaluator = sealapi.Evaluator(self._seal)
        self._lock = threading.Lock()  # one file pair per rotator

    def rotate(self, vector: ts.CKKSVector, steps: int) -> ts.CKKSVector:
        """``vector`` with slot i + steps moved to slot i (cyclically over all slots)."""
        (ciphertext,) = vector.ciphertext()
        with self._lock:
            source, target = self._path / "in", self._path / "out"
            ciphertext.save(str(source))
            loaded = sealapi.Ciphertext(self._seal)
            loaded.load(self._seal, str(source))
            self._evaluator.rotate_vector_inplace(loaded, steps % self._params.slots, self._keys)
            loaded.save(str(target))
            data = target.read_bytes()
        return ts.ckks_vector_from(self._context, vector_message(data, vector.size(), self._params.scale))


_rotators: OrderedDict[int, tuple[Any, Rotator]] = OrderedDict()
_rotators_lock = threading.Lock()


def rotator(context: ts.Context, params: ParamSet) -> Rotator:
    """The rotator of ``context``, made once per process (its Galois keys loaded once)."""
    with _rotators_lock:
        cached = _rotators.get(id(context))
        if cached is not None and cached[0] is context:
            _rotators.move_to_end(id(context))
            return cached[1]
        made = Rotator(context, params)
        _rotators[id(context)] = (context, made)  # holding the context keeps its id from being reused
        while len(_rotators) > _CACHED:
            _rotators.popitem(last=False)
        return made
