"""CKKS parameter sets, one per "level" of computation a column is stored for.

Both sets use N = 8192 (4096 slots per ciphertext). The HomomorphicEncryption.org standard
(Albrecht et al., 2018, table 1, ternary secret) gives 128-bit classical security for N = 8192
up to a total coefficient modulus of 218 bits; both sets stay far below it, so both are
128-bit secure. SEAL's own default ``CoeffModulus.MaxBitCount(8192, sec_level_type.tc128)``
is that same 218.

``SUMS`` (depth 0): primes (50, 60), 110 bits in all, scale 2^25. One 50-bit data prime; the
60-bit prime is SEAL's special (key-switching) prime, used only by the rotations of
rotate-and-sum and never part of a ciphertext (so it costs no storage). Measured: with a 50-bit
special prime the twelve rotations of a rotate-and-sum added ~0.02 (normalised units) of
error; the 60-bit one brings that to ~0.003.
Values are stored normalised (|x| <= 1), so a sum decrypts correctly while
|sum| * 2^25 < 2^49, i.e. |sum| < 2^24 (16.7M); we refuse stores above ``max_rows`` = 2^23
rows to keep a factor-two margin for noise. Fresh-encryption error is ~2e-5 of a normalised
value per slot (measured); a sum of n rows carries absolute error ~ 2e-5 * sqrt(n) + 0.003 in
normalised units (~0.02 at 1M rows, against a sum of up to 1M): counts decrypt to within
0.05 of their integer and are rounded to it, sums to ~1e-6 relative unless they cancel out.
Stored ciphertexts take 14.4 bytes per value (seeded, ``seeded``: the random second polynomial
saved as its seed; a full ciphertext, as stores before seeding hold, takes 28.8).

``PRODUCTS`` (depth 1): primes (60, 40, 60), 160 bits in all, scale 2^40. A ct x ct product
is left unrelinearised and unrescaled (size 3, scale 2^80) and decrypted as such by the
custodian, so the data modulus q = 2^100 must hold 2^80 times the per-slot sum: 2^19 units
of headroom per slot before the custodian folds the slots, i.e. products of normalised
values over up to 2^19 * 4096 = 2^31 rows. Encoding precision at 2^40 is ~1e-12 relative;
relative error of aggregates is dominated by the float64 fold (~1e-12). Stored ciphertexts take
28.3 bytes per value (seeded; 57.4 full). A ciphertext is at least one per level in a store, so
a store of one level's ciphertext takes ~59 KB (sums) or ~116 KB (products) however few rows it
holds. Products of ciphertexts (size 3) exist only in results, never seeded.

Measured (2-core machine, one process, symmetric encryption): encrypt + serialize one chunk
of 4096 values takes ~1.5 ms for SUMS and ~2.4 ms for PRODUCTS seeded (~1.5 and ~3.1 ms full:
half the bytes to compress). Loading one costs ~0.2 ms (SUMS) / 0.2-0.6 ms (PRODUCTS, depending
on the machine's load) more seeded, the seed's expansion (``bench/he.py``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Level(enum.StrEnum):
    """What a column is stored for: sums only (depth 0), or products of two columns (depth 1)."""

    SUMS = "sums"
    PRODUCTS = "products"


@dataclass(frozen=True)
class ParamSet:
    level: Level
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    depth: int  # multiplicative depth supported
    security_bits: int = 128

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        return float(2**self.scale_bits)

    @property
    def max_rows(self) -> int:
        """The most rows a store at this level may hold with every aggregate in range."""
        data_bits = sum(self.coeff_mod_bit_sizes[:-1])  # the last prime is the special prime
        headroom_bits = data_bits - 1 - self.scale_bits * (self.depth + 1)
        if self.depth == 0:
            # A depth-0 aggregate is rotate-summed over all slots: the whole total must fit.
            return int(2 ** (headroom_bits - 1))
        # A product is folded after decryption: only each slot's sum (rows / slots) must fit.
        return int(2 ** (headroom_bits - 1)) * self.slots


SUMS = ParamSet(level=Level.SUMS, poly_modulus_degree=8192, coeff_mod_bit_sizes=(50, 60), scale_bits=25, depth=0)
PRODUCTS = ParamSet(
    level=Level.PRODUCTS, poly_modulus_degree=8192, coeff_mod_bit_sizes=(60, 40, 60), scale_bits=40, depth=1
)
LEVELS: dict[Level, ParamSet] = {SUMS.level: SUMS, PRODUCTS.level: PRODUCTS}

# The HE standard's bound for N = 8192 at 128-bit security; checked at import so a retuned set
# cannot silently drop below it.
_MAX_MODULUS_BITS = {8192: 218, 16384: 438}
for _params in LEVELS.values():
    assert sum(_params.coeff_mod_bit_sizes) <= _MAX_MODULUS_BITS[_params.poly_modulus_degree], _params
