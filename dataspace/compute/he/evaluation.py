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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import tenseal as ts

from dataspace.compute.he.layout import StoreLayout, product_key, total_key
from dataspace.compute.he.params import LEVELS, Level
from dataspace.compute.he.result import Aggregate, EncryptedResult, OperationRejected
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


def expected_parts(terms: list[Term], layout: StoreLayout) -> dict[str, PartShape]:
    """Every part ``evaluate`` writes for ``terms``, by name."""
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
            scale=LEVELS[level].scale ** (1 if folded else len(term.factors)),
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
    vectors = {}
    for name, shape in expected.items():
        if result.folded[name] != shape.folded:
            raise _mismatch(f"{name!r} should {'' if shape.folded else 'not '}be folded")
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
    aggregates = []
    for term in terms:
        if not term.factors:
            value = float(layout.rows)
        else:
            decrypted = vectors[term.name].decrypt()
            raw = decrypted[0] if is_folded(term, layout) else math.fsum(decrypted)
            value = raw * term.scale
        if term.is_count:
            value = float(round(value))
        sensitivity = term.sensitivity
        aggregates.append(Aggregate(term.name, value, sensitivity, term.cohort, sensitivity, term.cohorts))
    return aggregates
