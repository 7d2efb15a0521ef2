"""Where the packed values of a store go (layout version 3): every series' tail, every series'
total and every product total, assigned to the slots of as few ciphertexts ("packs") as fit them.

Per level, first fit in order: the tails (``StoreLayout.tail_rows`` slots each, never split
across two packs, so a tail is one rotation away from slot 0), then the totals and the product
totals (one slot each) in the room the tails left, then in new packs.

A products-level pack is multiplied by the worker (a product over tails multiplies two rotated
packs, every slot with every slot), so every value in it must stay within the normalised range
the level's headroom is sized for (``params``): a sum of up to ``rows`` normalised values would not
(two totals meeting in one slot could overflow the modulus and spoil every slot). Its totals are
therefore stored divided by ``Pack.total_scale``, the smallest power of two >= rows, and multiplied
back by the custodian. That costs precision: the level's fresh error (~8e-10 of a normalised
value per slot, measured) times the scale, 0.013 at 2^24 rows, still well within a count's 0.05.
Above ``SCALED_TOTALS_MAX_ROWS`` a products-level store keeps its totals unscaled in packs of their
own, which no worker has reason to multiply. A sums-level pack is never multiplied: its totals are
stored as they are, like the version-2 totals.

A small store (N = 4096, ``params``) puts every total, of either level, and every product total in
its sums-level packs, as they are (``totals_level``): the small products set's fresh error (~1.5e-5
of a normalised value per slot) times a total scale of up to 2^10 would cost a count 0.015 and a
sum ~1e-5 of its range, while the small sums set (scale 2^30) holds a total to ~5e-7. Its
products-level packs then hold tails only. A total is read only by the custodian, at the slot its
layout names, whatever the pack's level: which key encrypts it changes nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dataspace.compute.he.layout import PackedSlot
from dataspace.compute.he.params import Level

SCALED_TOTALS_MAX_ROWS = 2**24


def total_scale(level: Level, rows: int) -> float:
    """What totals packed with a level's tails are divided by (see the module docstring)."""
    if level == Level.SUMS:
        return 1.0
    return float(2 ** max(0, math.ceil(math.log2(max(rows, 1)))))


@dataclass
class PackPlan:
    """One pack being filled: its level, what its totals are divided by, its values."""

    level: Level
    total_scale: float
    values: np.ndarray
    used: int = 0
    holds_tails: bool = True  # False: totals only (a large products-level store)


@dataclass
class Assignment:
    packs: list[PackPlan] = field(default_factory=list)
    tails: dict[str, PackedSlot] = field(default_factory=dict)  # by series key
    totals: dict[str, PackedSlot] = field(default_factory=dict)  # by series key, or by product key

    def _place(self, level: Level, scale: float, holds_tails: bool, values: np.ndarray, slots: int) -> PackedSlot:
        index = next(
            (
                i
                for i, pack in enumerate(self.packs)
                if pack.used + len(values) <= slots
                and (pack.level, pack.holds_tails, pack.total_scale) == (level, holds_tails, scale)
            ),
            len(self.packs),
        )
        if index == len(self.packs):
            self.packs.append(PackPlan(level, scale, np.zeros(slots), holds_tails=holds_tails))
        pack = self.packs[index]
        start = pack.used
        pack.values[start : start + len(values)] = values
        pack.used += len(values)
        return PackedSlot(pack=index, slot=start)


def assign(
    *,
    slots: int,
    rows: int,
    tails: list[tuple[str, Level, np.ndarray]],
    totals: list[tuple[str, Level, float]],
    totals_level: Level | None = None,
) -> Assignment:
    """Every tail (series key, level, its ``rows % slots`` values) and every total (series or
    product key, level, its plaintext sum) placed; the packs' values are what is encrypted. With
    ``totals_level`` (sums only: a pack no worker multiplies), every total goes to that level's
    packs, unscaled (a small store)."""
    if totals_level not in (None, Level.SUMS):
        raise ValueError("only sums-level packs may hold every total unscaled")
    out = Assignment()
    for key, level, values in tails:
        if not 0 < len(values) < slots:
            raise ValueError(f"the tail of {key!r} has {len(values)} values, not between 1 and {slots - 1}")
        # Totals elsewhere (a small store): a pack of tails has no totals to scale.
        scale = 1.0 if totals_level is not None else total_scale(level, rows)
        out.tails[key] = out._place(level, scale, True, values, slots)
    for key, level, total in totals:
        if totals_level is not None:
            out.totals[key] = out._place(totals_level, 1.0, True, np.array([total]), slots)
            continue
        separate = level == Level.PRODUCTS and rows > SCALED_TOTALS_MAX_ROWS
        scale = 1.0 if separate else total_scale(level, rows)
        out.totals[key] = out._place(level, scale, not separate, np.array([total / scale]), slots)
    return out
