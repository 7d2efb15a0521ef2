"""CKKS parameter sets, one per "level" of computation a column is stored for, per ring.

Both sets of a store above ``SMALL_MAX_ROWS`` rows use N = 8192 (4096 slots per ciphertext);
smaller stores use N = 4096 (see "Small stores" below). The HomomorphicEncryption.org standard
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

Small stores (N = 4096). A store of at most ``SMALL_MAX_ROWS`` = 1,024 rows uses two more sets,
one per level (``for_store``; ``keys.store_keys``), recorded in its layout (version 4). The HE
standard gives 128-bit classical security for N = 4096 up to 109 bits of coefficient modulus (the
import-time assertion below holds both). Why: a store has at least one ciphertext per level, and
at N = 8192 the bench table at 100 rows (10 series, 1,000 values; x and 8 indicators at the
products level, s at sums, 8 product totals) took one sums pack (~59 KB) and one products pack
(~116 KB): 175.8 bytes per value against a target of 64, i.e. <= 64 KB for the whole store.
Options measured (seeded, 1,000 values):

- (b) one level only (s's pack folded into the products pack): one N = 8192 products ciphertext,
  ~116 KB, 116 bytes per value. Not enough alone, and it would put a sums-only column where a
  worker may multiply it.
- (c) SEAL's compression is already on (zstd: a ciphertext takes ~its modulus bits per
  coefficient, not 64) and stored ciphertexts are already seeded. Modulus switching does not
  help: SUMS has one data prime already, and a products-level ciphertext needs both of its data
  primes to hold a product (scale 2^80).
- (a) N = 4096 sets, a ciphertext ~bits(q) / 8 * 4096 bytes: chosen, with the totals moved
  (below). The small sets' sizes (seeded, one ciphertext): ``SUMS_SMALL`` ~26 KB,
  ``PRODUCTS_SMALL`` ~34 KB; the bench table at 100 rows takes ~61 KB (61 bytes per value), at
  442 rows ~29, the demo registry at 100 rows ~24 (``bench/he.py``).

``SUMS_SMALL``: primes (43, 60), 103 bits, scale 2^30. A sums pack is never multiplied or rotated
by a worker (a depth-0 term of a packed store reads its totals), and it holds every total of the
store, of either level, unscaled (``packing``): a total is at most ``rows`` <= 2^10 in normalised
units, and 2^10 * 2^30 fits 2^42 (half the data modulus) with a factor of two for noise: the
``max_rows`` formula gives exactly 1,024. Fresh error ~5e-7 of a normalised value (measured,
scale 2^30): a total (so every depth-0 aggregate, and a declared group-by's product totals) is as
precise as at N = 8192 or better. A single-prime data modulus rotates badly (~1e-4 per slot),
which this set never needs; its Galois keys exist all the same.

``PRODUCTS_SMALL``: primes (32, 32, 45), 109 bits, scale 2^25. A product is at scale 2^50 in a
64-bit data modulus: 2^13 of headroom per slot, which must hold a product of two factors' sums
over the slots a worker aligns (tails are at most 1 per slot, never totals: they are in the sums
pack): ``slot_bound`` = 2^12 with a factor of two spare, so the two factors may add up 2^12
series between them multiplied (a filter of 67 cells times one series is 67); the worker refuses
a term above it (``evaluation``) rather than let a slot wrap around the modulus. Fresh error ~1.5e-5 of
a normalised value per slot (measured); a rotation adds the key switch's rounding, ~N / scale,
~1.5e-4 per slot (measured; two data primes of 32 bits under a 45-bit special prime: one 54-bit
data prime under a 55-bit special prime rotated with an error of ~0.6, and smaller digits did not
help: the rounding, not the digits, dominates). So a depth-1 term computed over the tails (a
variance, a covariance, an undeclared group-by: every tail is rotated to slot 0) carries
~1.5e-4 * sqrt(rows) in normalised units: its counts stay within 0.01 of their integer (tested;
0.05 is the rounding margin) and its sums are within ``references.SMALL_RING_RELATIVE_TOLERANCE``
(5e-3; measured at most 1.5e-3, a cancelling covariance at 100 rows), against ~1e-12 at
N = 8192. At a few hundred rows the differentially private noise a release carries is far
larger. Above 1,024 rows the N = 8192 sets apply: the products set's per-slot precision is kept
where sums of many rows would show it, and the scaled totals of a small products pack would have
cost a count 1.5e-5 * 2^10 = 0.015, which is why the totals moved to the sums pack instead.
Cost: rotation ~3x faster at N = 4096 (~2.5-5 ms against ~9 ms), products ~3x (0.16 against 0.5 ms).
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
    name: str = ""  # how a layout records it; the level's own name for the N = 8192 sets
    row_limit: int | None = None  # a tighter cap than the modulus gives (precision: see the docstring)

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        return float(2**self.scale_bits)

    @property
    def slot_bound(self) -> int:
        """The largest |value| a slot may hold at the set's full depth (a product, for depth 1),
        with a factor of two spare for noise."""
        data_bits = sum(self.coeff_mod_bit_sizes[:-1])
        return int(2 ** (data_bits - 2 - self.scale_bits * (self.depth + 1)))

    @property
    def max_rows(self) -> int:
        """The most rows a store at this level may hold with every aggregate in range."""
        data_bits = sum(self.coeff_mod_bit_sizes[:-1])  # the last prime is the special prime
        headroom_bits = data_bits - 1 - self.scale_bits * (self.depth + 1)
        # A depth-0 aggregate is rotate-summed over all slots: the whole total must fit. A product
        # is folded after decryption: only each slot's sum (rows / slots) must fit.
        rows = int(2 ** (headroom_bits - 1)) * (1 if self.depth == 0 else self.slots)
        return rows if self.row_limit is None else min(rows, self.row_limit)


SUMS = ParamSet(
    level=Level.SUMS, poly_modulus_degree=8192, coeff_mod_bit_sizes=(50, 60), scale_bits=25, depth=0, name="sums"
)
PRODUCTS = ParamSet(
    level=Level.PRODUCTS,
    poly_modulus_degree=8192,
    coeff_mod_bit_sizes=(60, 40, 60),
    scale_bits=40,
    depth=1,
    name="products",
)
LEVELS: dict[Level, ParamSet] = {SUMS.level: SUMS, PRODUCTS.level: PRODUCTS}

# Small stores (see the docstring): N = 4096, for stores of at most SMALL_MAX_ROWS rows.
SMALL_MAX_ROWS = 1024
SUMS_SMALL = ParamSet(
    level=Level.SUMS,
    poly_modulus_degree=4096,
    coeff_mod_bit_sizes=(43, 60),
    scale_bits=30,
    depth=0,
    name="sums-4096",
    row_limit=SMALL_MAX_ROWS,
)
PRODUCTS_SMALL = ParamSet(
    level=Level.PRODUCTS,
    poly_modulus_degree=4096,
    coeff_mod_bit_sizes=(32, 32, 45),
    scale_bits=25,
    depth=1,
    name="products-4096",
    row_limit=SMALL_MAX_ROWS,
)
SMALL_LEVELS: dict[Level, ParamSet] = {SUMS_SMALL.level: SUMS_SMALL, PRODUCTS_SMALL.level: PRODUCTS_SMALL}
PARAM_SETS: dict[str, ParamSet] = {p.name: p for p in (*LEVELS.values(), *SMALL_LEVELS.values())}


def for_store(level: Level, rows: int) -> ParamSet:
    """The parameter set a new store of ``rows`` rows uses at ``level``: the small ring up to
    ``SMALL_MAX_ROWS`` rows, N = 8192 above."""
    return (SMALL_LEVELS if rows <= SMALL_MAX_ROWS else LEVELS)[Level(level)]


def small_ring(params: ParamSet) -> bool:
    return params.poly_modulus_degree < SUMS.poly_modulus_degree


# The HE standard's bounds at 128-bit classical security (ternary secret); checked at import so a
# retuned set cannot silently drop below them.
_MAX_MODULUS_BITS = {4096: 109, 8192: 218, 16384: 438}
for _params in PARAM_SETS.values():
    assert sum(_params.coeff_mod_bit_sizes) <= _MAX_MODULUS_BITS[_params.poly_modulus_degree], _params
    assert _params.security_bits == 128, _params
