"""The Gaussian mechanism on decrypted aggregates, through OpenDP, and the error it adds.

A job's ρ is split evenly across the m numbers the custodian decrypts (its aggregates and the
counts that are their cohorts): number i gets Gaussian noise of scale σᵢ = Δᵢ / √(2ρ/m), its
L2 sensitivity Δᵢ coming from the column bounds the provider declared, never from the data.
Sampling is OpenDP's (exact discrete Gaussian on a grid, CSPRNG; Mironov 2012's floating-point
attack does not apply), and OpenDP itself reports the loss each number costs: the sum of those
is what the ledger records, so rounding inside OpenDP is charged, not assumed away.

Whatever is computed from the noisy numbers afterwards (a mean, regression coefficients, a
rounding) is post-processing and costs nothing more; the error bounds reported beside each
released number are computed that way too, by re-sampling the noise around the released
aggregates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from dataspace.privacy import dp

Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
# Enough for a 95% quantile to within about a tenth of itself; each sample costs one finishing.
ERROR_BOUND_SAMPLES = 200


@dataclass(frozen=True)
class NoisyAggregates:
    values: dict[str, float]
    scales: dict[str, float]  # the Gaussian's standard deviation per aggregate (public: from bounds and ρ)
    rho: float  # the loss OpenDP charged for all of them together


# OpenDP rounds its charge up: for about half of all (Δ, ρ) it charges the textbook scale a few
# ulps above ρ, and the textbook scale made larger by one part in 10^15 is within it (300 random
# pairs, every one). Each candidate costs one of OpenDP's own maps (~0.3 ms); its binary search,
# the last resort, ~30 ms: a tenth of a whole job.
_ROUNDING_STEPS = (1e-15, 1e-12, 1e-9)


class _Gaussian(NamedTuple):
    measurement: Any  # OpenDP's; each invocation draws fresh noise
    scale: float
    charge: float  # the ρ OpenDP charges for one release at this sensitivity


@lru_cache(maxsize=1024)
def _gaussian_for(sensitivity: float, rho: float) -> _Gaussian:
    """The Gaussian of the smallest scale whose loss OpenDP charges within ``rho``, to within one
    part in 10^9: the textbook Δ/√(2ρ), or the first of it nudged up past OpenDP's rounding, else
    OpenDP's own search. Every candidate is judged by OpenDP's map, so the guarantee is OpenDP's.
    Cached: a group-by's sums share one sensitivity, as do its counts."""
    textbook = sensitivity / math.sqrt(2.0 * rho)
    for scale in (textbook, *(textbook * (1.0 + step) for step in _ROUNDING_STEPS)):
        measurement = _gaussian(scale)
        charge = float(measurement.map(sensitivity))
        if charge <= rho:
            return _Gaussian(measurement, scale, charge)
    scale = float(dp.binary_search_param(_gaussian, d_in=sensitivity, d_out=rho))
    measurement = _gaussian(scale)
    return _Gaussian(measurement, scale, float(measurement.map(sensitivity)))


def _gaussian(scale: float) -> Any:
    return dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=scale)


def gaussian(values: Mapping[str, float], sensitivities: Mapping[str, float], rho: float) -> NoisyAggregates:
    """Each value with Gaussian noise for its L2 sensitivity, ρ split evenly among them."""
    if rho <= 0:
        raise ValueError("the Gaussian mechanism needs a privacy loss above zero")
    share = rho / len(values)
    noisy: dict[str, float] = {}
    scales: dict[str, float] = {}
    charged = 0.0
    for name, value in values.items():
        release = _gaussian_for(max(float(sensitivities[name]), 1e-12), share)
        noisy[name] = float(release.measurement(float(value)))
        scales[name] = release.scale
        charged += release.charge
    return NoisyAggregates(values=noisy, scales=scales, rho=charged)


def error_bounds(
    finish: Callable[[dict[str, float]], Any], noisy: NoisyAggregates, *, samples: int = ERROR_BOUND_SAMPLES
) -> Any:
    """For every number ``finish`` releases, the half-width of a 95% interval of its error:
    ``finish`` applied to the released aggregates plus fresh noise of the same scales, compared
    with ``finish`` of the released aggregates (post-processing: no privacy cost). Returns the
    same structure as ``finish``'s numbers (None where ``finish`` gives None)."""
    centre = finish(dict(noisy.values))
    names = list(noisy.values)
    shifts = np.random.default_rng().normal(0.0, [noisy.scales[name] for name in names], size=(samples, len(names)))
    base = np.array([noisy.values[name] for name in names])
    draws = [finish(dict(zip(names, (base + row).tolist(), strict=True))) for row in shifts]
    return _spread(centre, draws)


def _spread(centre: Any, draws: list[Any]) -> Any:
    if isinstance(centre, bool) or centre is None or isinstance(centre, str):
        return None
    if isinstance(centre, int | float):
        errors = [abs(float(d) - float(centre)) for d in draws if isinstance(d, int | float) and math.isfinite(d)]
        return float(np.quantile(errors, 0.95)) if errors else None
    if isinstance(centre, dict):
        return {
            key: _spread(value, [d.get(key) if isinstance(d, dict) else None for d in draws])
            for key, value in centre.items()
        }
    if isinstance(centre, list):
        return [
            _spread(value, [d[i] if isinstance(d, list) and len(d) > i else None for d in draws])
            for i, value in enumerate(centre)
        ]
    return None
