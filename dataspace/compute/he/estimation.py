"""Bounds and bucket edges estimated with differential privacy, for columns of a personal dataset
whose provider declared neither (OpenDP, zero-concentrated DP).

The candidates are a fixed grid, chosen before any data is seen: 0 and the "nice" numbers
1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times 10^-3 ... 10^9 (and 10^10), with their negatives. The
profiling pass counts a column's present values per grid bin (values beyond the grid in its outer
bins): adding or removing one row moves one count by one, so the count vector has sensitivity 1.
One release per column (``make_b_ary_tree >> then_gaussian``, PRIVACY-NOTES section 1) gives every
quantile at once: the bounds (``BOUND_ALPHAS``, rounded outwards to the grid) and the inner bucket
edges (evenly spaced quantiles, rounded to the nearest grid number); the outer edges are the
bounds. Everything after the release (consistency, quantiles, rounding) is post-processing.

OpenDP accounts the release: ``rho`` is what its measurement maps d_in = 1 to, never more than
the share the build was given.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

_MANTISSAS = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
_POSITIVE = [float(f"{m}e{k}") for k in range(-3, 10) for m in _MANTISSAS] + [1e10]
CANDIDATES: tuple[float, ...] = (*(-p for p in reversed(_POSITIVE)), 0.0, *_POSITIVE)
BRANCHING = 4
# Clamp the outer half percent on each side: wide enough that a sum is barely biased, narrow
# enough that one outlier does not set the sensitivity of every answer on the column.
BOUND_ALPHAS = (0.005, 0.995)


def bin_counts(values: np.ndarray) -> np.ndarray:
    """How many of ``values`` fall in each grid bin [c[i], c[i+1]) (the last closed); values
    beyond the grid count in its outer bins."""
    grid = np.asarray(CANDIDATES)
    index = np.searchsorted(grid, np.clip(values, grid[0], grid[-1]), side="right") - 1
    return np.bincount(np.clip(index, 0, len(grid) - 2), minlength=len(grid) - 1).astype(np.int64)


@dataclass(frozen=True)
class Estimate:
    bounds: tuple[float, float]
    inner_edges: tuple[float, ...]  # strictly inside the bounds, ascending
    rho: float  # zCDP rho spent


def _measurement(scale: float) -> Any:
    from dataspace.privacy import dp

    tree = dp.t.make_b_ary_tree(
        dp.vector_domain(dp.atom_domain(T=int)),
        dp.l2_distance(T=int),
        leaf_count=len(CANDIDATES) - 1,
        branching_factor=BRANCHING,
    )
    return tree >> dp.m.then_gaussian(scale=scale)


def _floor(value: float) -> float:
    return CANDIDATES[max(bisect.bisect_right(CANDIDATES, value) - 1, 0)]


def _ceil(value: float) -> float:
    return CANDIDATES[min(bisect.bisect_left(CANDIDATES, value), len(CANDIDATES) - 1)]


def _nearest(value: float, bounds: tuple[float, float]) -> float:
    """The grid number nearest ``value`` among those a consumer reads as an edge of this range:
    0, or one at least a hundredth of the range's width from it (not -0.0015 in [-5, 5])."""
    floor = (bounds[1] - bounds[0]) / 100
    grid = [c for c in CANDIDATES if c == 0 or abs(c) >= floor]
    return min(grid, key=lambda c: abs(c - value))


def estimate(counts: np.ndarray, *, rho: float, buckets: int, bounds: tuple[float, float] | None) -> Estimate:
    """The column's bounds (``bounds`` if declared, else estimated) and ``buckets - 1`` inner edge
    candidates (none for ``buckets`` < 2), from one Gaussian release of its grid counts at most
    ``rho``."""
    from dataspace.privacy import dp

    if rho <= 0:
        raise ValueError("an estimate needs rho > 0")
    scale = dp.binary_search_param(_measurement, d_in=1, d_out=rho)
    measurement = _measurement(scale)
    noisy = measurement([int(c) for c in counts])
    leaves = dp.t.make_consistent_b_ary_tree(BRANCHING)(noisy)
    inner_alphas = [i / buckets for i in range(1, buckets)] if buckets >= 2 else []
    alphas = [BOUND_ALPHAS[0], *inner_alphas, BOUND_ALPHAS[1]]  # OpenDP wants them increasing
    quantiles = dp.t.make_quantiles_from_counts(list(CANDIDATES), alphas=alphas)([float(v) for v in leaves])
    if not all(math.isfinite(q) for q in quantiles):  # nothing counted at all (an all-null column)
        quantiles = [0.0, *(0.5 for _ in inner_alphas), 1.0]
    if bounds is None:
        low, high = _floor(quantiles[0]), _ceil(quantiles[-1])
        if high <= low:
            high = _ceil(math.nextafter(low, math.inf))
        bounds = (low, high)
    inner = sorted({_nearest(q, bounds) for q in quantiles[1:-1]})
    return Estimate(
        bounds=bounds,
        inner_edges=tuple(e for e in inner if bounds[0] < e < bounds[1]),
        rho=float(measurement.map(1)),
    )
