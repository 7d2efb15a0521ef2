"""Terms evaluated over ciphertexts (the HE worker, public contexts only) and decrypted into
aggregates (the custodian, secret contexts).

A depth-0 term whose series all have materialised totals is the sum of those totals (one
ciphertext per series, already folded); every other term streams all chunks, holding one chunk of
each needed series (plus one accumulator per term) at a time. Counts decrypt to within 0.05 of
their integer and are rounded to it (see ``params``); a term with no factor is the layout's exact
row count, never encrypted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import tenseal as ts

from dataspace.compute.he.layout import StoreLayout, total_key
from dataspace.compute.he.result import Aggregate, EncryptedResult
from dataspace.compute.he.terms import Term

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
    streamed = [t for t in encrypted if t.name not in accumulators]
    accumulators.update(_streamed(streamed, layout, contexts, read))
    streamed_names = {t.name for t in streamed}
    parts: dict[str, bytes] = {}
    folded: dict[str, bool] = {}
    for term in encrypted:
        accumulator = accumulators[term.name]
        if term.depth == 0:
            # A sum of totals is folded already; a sum of chunks is rotate-and-summed here.
            folded_sum = accumulator if term.name not in streamed_names else accumulator.sum()
            parts[term.name], folded[term.name] = folded_sum.serialize(), True
        else:
            parts[term.name], folded[term.name] = accumulator.serialize(), False
    return EncryptedResult(parts=parts, folded=folded)


def decrypt(
    terms: list[Term], layout: StoreLayout, result: EncryptedResult, contexts: dict[str, ts.Context]
) -> list[Aggregate]:
    """Every term's value in real units, after checking ``result`` holds exactly ``terms``."""
    expected = {t.name: t.depth == 0 for t in terms if t.factors}
    if expected != result.folded or set(result.parts) != set(expected):
        raise ValueError("the encrypted result does not match the operation's terms")
    aggregates = []
    for term in terms:
        if not term.factors:
            value = float(layout.rows)
        else:
            level = layout.column(term.factors[0].column).level
            vector = ts.ckks_vector_from(contexts[level], result.parts[term.name]).decrypt()
            raw = vector[0] if result.folded[term.name] else math.fsum(vector)
            value = raw * term.scale
        if term.is_count:
            value = float(round(value))
        aggregates.append(Aggregate(term.name, value, term.sensitivity, term.cohort))
    return aggregates
