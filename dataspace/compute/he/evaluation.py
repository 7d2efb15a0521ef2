"""Terms evaluated over ciphertexts (the HE worker, public contexts only), checked, and decrypted
into aggregates (the custodian, secret contexts).

A depth-0 term whose series all have materialised totals is the sum of those totals (one
ciphertext per series, already folded); so is a depth-1 term whose every pair of factor series has
a materialised product total (``product_sources``: a declared group-by). Every other term streams
all chunks, holding one chunk of each needed series (plus one accumulator per term) at a time.
Counts decrypt to within 0.05 of their integer and are rounded to it (see ``params``); a term with
no factor is the layout's exact row count, never encrypted.

The custodian decrypts nothing it did not expect. ``expected_parts`` re-derives, from the terms
(the operation, the job's parameters, the layout), every part the result must hold: its name,
whether it is folded, its level, its slot count (1 when folded, the layout's slots otherwise), its
size (2 ciphertext polynomials, 3 for an unrelinearised product) and its scale. ``load_result``
refuses a result that differs in any of them (``result_shape_mismatch``) before any part is
decrypted: a worker that added a part, swapped two, or left a vector unfolded cannot make the
custodian decrypt a slot vector where one number was due.

Packed layouts (version 3, ``layout``). Every total and product total sits at one slot of a pack:
a term computed from them (``pack_sources``) has no part of its own; the result carries each pack
it needs once (``pack:<i>``), verbatim as stored, and the custodian refuses one whose bytes are
not the stored ciphertext's (``Pack.ciphertext_sha256``), then adds up the slots its own layout
names for the term, times each pack's ``total_scale``. Nothing in the result names a slot. Any
other term (a product over an undeclared pair) has a part over the full chunks (``<term>``, folded
by the custodian over every slot, as before) where the store has full chunks, and a part over the
tails (``tail:<term>``) where it has a tail: the worker rotates each series' tail to slot 0
(``rotation``), adds up and multiplies them there, and the custodian folds only slots 0 to
``tail_rows``; the other slots hold products of other rows and series and are never read.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import tenseal as ts

from dataspace.compute.he.keys import context_param_set
from dataspace.compute.he.layout import PackedSlot, StoreLayout, pack_key, product_key, total_key
from dataspace.compute.he.params import Level
from dataspace.compute.he.result import Aggregate, EncryptedResult, OperationRejected
from dataspace.compute.he.rotation import rotator
from dataspace.compute.he.terms import Term
from dataspace.errors import ErrorCode

SeriesReader = Callable[[str], Iterator[bytes]]


def _totals(
    terms: list[Term], layout: StoreLayout, contexts: dict[str, ts.Context], read: SeriesReader
) -> dict[str, Any]:
    """The accumulator of every term computed from materialised totals, by term name."""
    totals: dict[str, Any] = {}
    for key in sorted({key for term in terms for key in term.factors[0].keys}):
        stream = read(total_key(key))
        totals[key] = ts.ckks_vector_from(contexts[layout.series[key].level], next(stream))
        if next(stream, None) is not None:
            raise ValueError(f"the total of series {key!r} has more than one ciphertext")
    accumulators: dict[str, Any] = {}
    for term in terms:
        factor_keys = term.factors[0].keys
        accumulator = totals[factor_keys[0]]
        for key in factor_keys[1:]:
            accumulator = accumulator + totals[key]  # not in place: totals are shared by terms
        accumulators[term.name] = accumulator
    return accumulators


def product_sources(term: Term, layout: StoreLayout) -> list[str] | None:
    """The materialised product totals whose sum is the depth-1 ``term`` (one per pair of its two
    factors' series), or None where the store lacks any of them and the term streams the chunks."""
    if term.depth != 1:
        return None
    first, second = term.factors
    keys = [product_key(a, b) for a in first.keys for b in second.keys]
    return keys if all(key in layout.products for key in keys) else None


def _products(
    terms: list[Term], layout: StoreLayout, contexts: dict[str, ts.Context], read: SeriesReader
) -> dict[str, Any]:
    """The accumulator of every depth-1 term computed from materialised product totals, by term name."""
    sources = {term.name: product_sources(term, layout) or [] for term in terms}
    totals: dict[str, Any] = {}
    for key in sorted({key for keys in sources.values() for key in keys}):
        stream = read(key)
        totals[key] = ts.ckks_vector_from(contexts[layout.products[key].level], next(stream))
        if next(stream, None) is not None:
            raise ValueError(f"the product total {key!r} has more than one ciphertext")
    accumulators: dict[str, Any] = {}
    for term in terms:
        keys = sources[term.name]
        accumulator = totals[keys[0]]
        for key in keys[1:]:
            accumulator = accumulator + totals[key]  # not in place: totals are shared by terms
        accumulators[term.name] = accumulator
    return accumulators


def is_folded(term: Term, layout: StoreLayout) -> bool:
    """Whether the term's part is one folded number (a depth-0 sum, or a sum of product totals)
    rather than an unrelinearised product's slot vector, folded by the custodian."""
    return term.depth == 0 or product_sources(term, layout) is not None


def _streamed(
    terms: list[Term], layout: StoreLayout, contexts: dict[str, ts.Context], read: SeriesReader
) -> dict[str, Any]:
    """The accumulator of every term computed chunk by chunk, by term name."""
    keys = sorted({key for term in terms for factor in term.factors for key in factor.keys})
    distinct_factors = sorted({factor.keys for term in terms for factor in term.factors})
    streams = {key: read(key) for key in keys}
    accumulators: dict[str, Any] = {}
    for _ in range(layout.chunks if terms else 0):
        chunk = {
            key: ts.ckks_vector_from(contexts[layout.series[key].level], next(stream))
            for key, stream in streams.items()
        }
        sums: dict[tuple[str, ...], Any] = {}
        for factor_keys in distinct_factors:
            total = chunk[factor_keys[0]]
            for key in factor_keys[1:]:
                total = total + chunk[key]
            sums[factor_keys] = total
        for term in terms:
            values = [sums[f.keys] for f in term.factors]
            # Products stay size 3: relinearising costs ~7x the multiplication and the
            # custodian decrypts size-3 ciphertexts as they are.
            contribution = values[0] * values[1] if len(values) == 2 else values[0]
            # Not in place: a one-factor contribution is the chunk's own vector, shared with
            # other terms (and TenSEAL's copy() refuses public contexts).
            previous = accumulators.get(term.name)
            accumulators[term.name] = contribution if previous is None else previous + contribution
    for stream in streams.values():
        if next(stream, None) is not None:
            raise ValueError("a series has more chunks than the layout's rows")
    return accumulators


TAIL_PREFIX = "tail:"


def tail_part(name: str) -> str:
    """The part holding term ``name``'s product over the packed tails."""
    return TAIL_PREFIX + name


def pack_sources(term: Term, layout: StoreLayout) -> list[PackedSlot] | None:
    """The packed slots whose sum is ``term`` in a packed layout: its factor's series totals at
    depth 0, its product totals at depth 1 where the store has them all; None for any other term
    (computed from the chunks and tails) and in a layout before packing."""
    if not layout.packed or not term.factors:
        return None
    if term.depth == 0:
        slots = [layout.series[key].total for key in term.factors[0].keys]
    else:
        keys = product_sources(term, layout)
        if keys is None:
            return None
        slots = [layout.products[key].total for key in keys]
    return None if any(slot is None for slot in slots) else [slot for slot in slots if slot is not None]


def _read_one(read: SeriesReader, key: str) -> bytes:
    stream = read(key)
    chunk = next(stream)
    if next(stream, None) is not None:
        raise ValueError(f"{key!r} has more than one ciphertext")
    return chunk


def _tails(
    terms: list[Term], layout: StoreLayout, contexts: dict[str, ts.Context], read: SeriesReader
) -> dict[str, Any]:
    """The accumulator of every term over the packed tails, by term name: each series' tail rotated
    to slot 0, a factor's series added up there, two factors multiplied (unrelinearised)."""
    packs: dict[int, Any] = {}
    aligned: dict[str, Any] = {}

    def tail(key: str) -> Any:
        if key not in aligned:
            slot = layout.series[key].tail
            if slot is None:
                raise ValueError(f"series {key!r} has no packed tail")
            pack = layout.packs[slot.pack]
            if slot.pack not in packs:
                packs[slot.pack] = ts.ckks_vector_from(contexts[pack.level], _read_one(read, pack_key(slot.pack)))
            vector = packs[slot.pack]
            if slot.slot:
                vector = rotator(contexts[pack.level], layout.param_set(pack.level)).rotate(vector, slot.slot)
            aligned[key] = vector
        return aligned[key]

    sums: dict[tuple[str, ...], Any] = {}
    accumulators: dict[str, Any] = {}
    for term in terms:
        # Every slot of an aligned factor is a sum of as many stored values (each at most 1) as the
        # factor has series, products of other rows included: their product must fit the set's
        # headroom (``params``), or the slots the custodian folds would wrap around the modulus.
        level = layout.series[term.factors[0].keys[0]].level
        bound = math.prod(len(factor.keys) for factor in term.factors)
        if bound > layout.param_set(level).slot_bound:
            raise ValueError(f"term {term.name!r} adds up too many series for the {level.value!r} parameter set")
        values = []
        for factor in term.factors:
            if factor.keys not in sums:
                total = tail(factor.keys[0])
                for key in factor.keys[1:]:
                    total = total + tail(key)  # not in place: a tail is shared by factors
                sums[factor.keys] = total
            values.append(sums[factor.keys])
        accumulators[term.name] = values[0] * values[1] if len(values) == 2 else values[0]
    return accumulators


def _evaluate_packed(
    terms: list[Term], layout: StoreLayout, contexts: dict[str, ts.Context], read: SeriesReader
) -> EncryptedResult:
    parts: dict[str, bytes] = {}
    folded: dict[str, bool] = {}
    sources = {term.name: pack_sources(term, layout) for term in terms}
    for index in sorted({slot.pack for slots in sources.values() if slots for slot in slots}):
        parts[pack_key(index)], folded[pack_key(index)] = _read_one(read, pack_key(index)), True
    computed = [term for term in terms if sources[term.name] is None]
    if computed and layout.chunks:
        for name, accumulator in _streamed(computed, layout, contexts, read).items():
            parts[name], folded[name] = accumulator.serialize(), False
    if computed and layout.tail_rows:
        for name, accumulator in _tails(computed, layout, contexts, read).items():
            parts[tail_part(name)], folded[tail_part(name)] = accumulator.serialize(), False
    return EncryptedResult(parts=parts, folded=folded)


def require_public(contexts: dict[str, ts.Context]) -> None:
    """An HE worker computes with public contexts only (invariant 3)."""
    if any(context.is_private() for context in contexts.values()):
        raise ValueError("compute takes public contexts only")


def evaluate(
    terms: list[Term], layout: StoreLayout, contexts: dict[str, ts.Context], read: SeriesReader
) -> EncryptedResult:
    """Every encrypted term of ``terms``. ``read(key)`` yields a series' chunks, and
    ``read(total_key(key))`` its total (``store.read_series`` does both)."""
    require_public(contexts)
    encrypted = [t for t in terms if t.factors]
    if layout.packed:
        return _evaluate_packed(encrypted, layout, contexts, read)
    from_totals = [t for t in encrypted if t.depth == 0 and all(layout.series[k].total_blob for k in t.factors[0].keys)]
    accumulators = _totals(from_totals, layout, contexts, read)
    accumulators.update(_products([t for t in encrypted if product_sources(t, layout)], layout, contexts, read))
    streamed = [t for t in encrypted if t.name not in accumulators]
    accumulators.update(_streamed(streamed, layout, contexts, read))
    streamed_names = {t.name for t in streamed}
    parts: dict[str, bytes] = {}
    folded: dict[str, bool] = {}
    for term in encrypted:
        accumulator = accumulators[term.name]
        if is_folded(term, layout):
            # A sum of totals is folded already; a sum of chunks is rotate-and-summed here.
            folded_sum = accumulator if term.name not in streamed_names else accumulator.sum()
            parts[term.name], folded[term.name] = folded_sum.serialize(), True
        else:
            parts[term.name], folded[term.name] = accumulator.serialize(), False
    return EncryptedResult(parts=parts, folded=folded)


@dataclass(frozen=True)
class PartShape:
    """What one part of an encrypted result must be."""

    folded: bool
    level: Level
    slots: int  # values in the vector: 1 once folded, the layout's slots otherwise
    size: int  # polynomials per ciphertext: 2, or 3 for an unrelinearised product
    scale: float  # the level's scale, squared for a product
    sha256: str | None = None  # a pack: the stored ciphertext's digest, which the part's bytes must have


def _expected_packed(terms: list[Term], layout: StoreLayout) -> dict[str, PartShape]:
    parts: dict[str, PartShape] = {}
    packs: set[int] = set()
    for term in terms:
        if not term.factors:
            continue
        slots = pack_sources(term, layout)
        if slots is not None:
            packs.update(slot.pack for slot in slots)
            continue
        level = layout.series[term.factors[0].keys[0]].level
        shape = PartShape(
            folded=False,
            level=level,
            slots=layout.slots,
            size=2 if term.depth == 0 else 3,
            scale=layout.param_set(level).scale ** len(term.factors),
        )
        if layout.chunks:
            parts[term.name] = shape
        if layout.tail_rows:
            parts[tail_part(term.name)] = shape
    for index in sorted(packs):
        pack = layout.packs[index]
        parts[pack_key(index)] = PartShape(
            folded=True,
            level=pack.level,
            slots=layout.slots,
            size=2,
            scale=layout.param_set(pack.level).scale,
            sha256=pack.ciphertext_sha256,
        )
    return parts


def expected_parts(terms: list[Term], layout: StoreLayout) -> dict[str, PartShape]:
    """Every part ``evaluate`` writes for ``terms``, by name."""
    if layout.packed:
        return _expected_packed(terms, layout)
    parts = {}
    for term in terms:
        if not term.factors:
            continue
        level = layout.series[term.factors[0].keys[0]].level
        folded = is_folded(term, layout)
        parts[term.name] = PartShape(
            folded=folded,
            level=level,
            slots=1 if folded else layout.slots,
            size=2 if folded else 3,
            # A product total was multiplied in plaintext: encrypted at the level's scale, once.
            scale=layout.param_set(level).scale ** (1 if folded else len(term.factors)),
        )
    return parts


def _mismatch(message: str) -> OperationRejected:
    return OperationRejected(
        f"the encrypted result does not match the operation's terms: {message}", code=ErrorCode.RESULT_SHAPE_MISMATCH
    )


def load_result(
    terms: list[Term], layout: StoreLayout, result: EncryptedResult, contexts: dict[str, ts.Context]
) -> dict[str, Any]:
    """Every part of ``result`` loaded (not decrypted), after checking it is exactly the parts of
    ``terms``; ``OperationRejected`` (``result_shape_mismatch``) otherwise."""
    expected = expected_parts(terms, layout)
    if set(result.parts) != set(expected) or set(result.folded) != set(expected):
        extra, missing = sorted(set(result.parts) - set(expected)), sorted(set(expected) - set(result.parts))
        raise _mismatch(f"parts not expected {extra}, parts missing {missing}")
    for level in {shape.level for shape in expected.values()}:
        # The custodian's own contexts must be of the sets its layout records (a small store's
        # N = 4096 ones, or N = 8192): a ciphertext is then loaded only under its own parameters.
        if context_param_set(contexts[level], level) != layout.param_set(level):
            raise _mismatch(f"the {level.value!r} context is not of the layout's parameter set")
    vectors = {}
    for name, shape in expected.items():
        if result.folded[name] != shape.folded:
            raise _mismatch(f"{name!r} should {'' if shape.folded else 'not '}be folded")
        if shape.sha256 is not None and hashlib.sha256(result.parts[name]).hexdigest() != shape.sha256:
            # Checked before anything is loaded: a pack is read at slots the custodian names, so
            # it must be the very ciphertext the store holds, not one that holds other values there.
            raise _mismatch(f"{name!r} is not the store's ciphertext")
        try:
            vector = ts.ckks_vector_from(contexts[shape.level], result.parts[name])
        except Exception:  # SEAL refuses a ciphertext of another parameter set (level)
            raise _mismatch(f"{name!r} is not a ciphertext vector of the {shape.level.value!r} level") from None
        ciphertexts = vector.ciphertext()
        if vector.size() != shape.slots:
            raise _mismatch(f"{name!r} holds {vector.size()} slots, not {shape.slots}")
        if len(ciphertexts) != 1 or ciphertexts[0].size() != shape.size or ciphertexts[0].scale != shape.scale:
            raise _mismatch(f"{name!r} is not a {'sum' if shape.folded else 'product'} of the expected depth")
        vectors[name] = vector
    return vectors


def decrypt(
    terms: list[Term], layout: StoreLayout, result: EncryptedResult, contexts: dict[str, ts.Context]
) -> list[Aggregate]:
    """Every term's value in real units, after ``load_result`` has checked ``result`` holds
    exactly the parts of ``terms``."""
    vectors = load_result(terms, layout, result, contexts)
    packs: dict[int, list[float]] = {}

    def packed(slot: PackedSlot) -> float:
        if slot.pack not in packs:
            packs[slot.pack] = vectors[pack_key(slot.pack)].decrypt()
        return packs[slot.pack][slot.slot] * layout.packs[slot.pack].total_scale

    aggregates = []
    for term in terms:
        sources = pack_sources(term, layout)
        if not term.factors:
            value = float(layout.rows)
        elif layout.packed:
            if sources is not None:
                raw = math.fsum(packed(slot) for slot in sources)
            else:
                # Only the slots this layout says hold the term's rows: every slot of the full
                # chunks, the first tail_rows of the tails.
                folds = list(vectors[term.name].decrypt()) if layout.chunks else []
                if layout.tail_rows:
                    folds += vectors[tail_part(term.name)].decrypt()[: layout.tail_rows]
                raw = math.fsum(folds)
            value = raw * term.scale
        else:
            decrypted = vectors[term.name].decrypt()
            raw = decrypted[0] if is_folded(term, layout) else math.fsum(decrypted)
            value = raw * term.scale
        if term.is_count:
            value = float(round(value))
        sensitivity = term.sensitivity
        aggregates.append(Aggregate(term.name, value, sensitivity, term.cohort, sensitivity, term.cohorts))
    return aggregates
