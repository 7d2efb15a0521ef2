"""Privacy accounting in zero-concentrated differential privacy (zCDP), done by OpenDP.

Every release spends a privacy loss ρ (zCDP); losses on one dataset compose by OpenDP's
composition (for zCDP the total is their sum: the accountant asks OpenDP rather than adding
them itself, so a change of definition lives in one library). Providers and consumers speak
(ε, δ)-DP: an ε at the space's δ converts to the largest ρ whose zCDP guarantee implies it,
through OpenDP's conversion (Canonne, Kamath and Steinke 2020), which is tighter than the
textbook ρ + 2√(ρ ln 1/δ).

A total of ε = 1 at δ = 1e-9 is ρ ≈ 0.0150; one job at ε = 0.1 is ρ ≈ 1.8e-4, so about 84 such
jobs fit where basic composition of pure ε would allow 10.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import opendp.prelude as dp

dp.enable_features("contrib")

_UNIT = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)


def epsilon_for_rho(rho: float, delta: float) -> float:
    """The ε such that a ρ-zCDP release is (ε, δ)-DP, by OpenDP's conversion."""
    if rho <= 0:
        return 0.0
    # A Gaussian mechanism of sensitivity 1 whose loss is exactly rho stands for any rho-zCDP release.
    measurement = dp.m.make_gaussian(*_UNIT, scale=1.0 / math.sqrt(2.0 * rho))
    profile = dp.c.make_zCDP_to_approxDP(measurement).map(1.0)
    return float(profile.epsilon(delta))


@lru_cache(maxsize=4096)
def rho_for_epsilon(epsilon: float, delta: float) -> float:
    """The largest ρ whose zCDP guarantee implies (ε, δ)-DP (bisection on ``epsilon_for_rho``,
    which grows with ρ), rounded down to the nano-ρ the chain counts in."""
    if not math.isfinite(epsilon) or epsilon <= 0:
        return 0.0
    low, high = 0.0, epsilon  # rho <= epsilon always: epsilon(rho, delta) >= rho
    for _ in range(80):
        middle = (low + high) / 2
        if epsilon_for_rho(middle, delta) <= epsilon:
            low = middle
        else:
            high = middle
    return math.floor(low * 1e9) / 1e9


def total_rho(losses: Sequence[float]) -> float:
    """The privacy loss of every release in ``losses`` together, by OpenDP's adaptive
    composition under zCDP (a sum; zero losses are left out)."""
    spent = [float(rho) for rho in losses if rho > 0]
    if not spent:
        return 0.0
    composed = dp.c.make_adaptive_composition(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.symmetric_distance(),
        dp.zero_concentrated_divergence(),
        d_in=1,
        d_mids=spent,
    )
    return float(composed.map(1))
