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
    """The largest ρ whose zCDP guarantee implies (ε, δ)-DP, rounded down to the nano-ρ the
    chain counts in.

    ``epsilon_for_rho`` grows with ρ and each evaluation builds an OpenDP conversion (~1.5 ms),
    so the root is found by the Illinois variant of regula falsi (superlinear: a dozen
    evaluations, not the ~80 of a bisection to 1e-12), bracketed below by the textbook bound
    ρ + 2√(ρ ln 1/δ) = ε (OpenDP's conversion is tighter, so its root lies above) and above by
    ε itself."""
    if not math.isfinite(epsilon) or epsilon <= 0:
        return 0.0
    log_term = math.log(1 / delta)
    low = (math.sqrt(log_term + epsilon) - math.sqrt(log_term)) ** 2  # textbook root
    high = epsilon
    f_low, f_high = epsilon_for_rho(low, delta) - epsilon, epsilon_for_rho(high, delta) - epsilon
    side = 0
    for _ in range(60):
        if high - low <= 1e-12 or f_low == f_high:
            break
        middle = (low * f_high - high * f_low) / (f_high - f_low)
        f_middle = epsilon_for_rho(middle, delta) - epsilon
        if f_middle <= 0:
            low, f_low = middle, f_middle
            if side == -1:
                f_high /= 2
            side = -1
        else:
            high, f_high = middle, f_middle
            if side == 1:
                f_low /= 2
            side = 1
    rho = math.floor(low * 1e9) / 1e9
    while rho > 0 and epsilon_for_rho(rho, delta) > epsilon:  # never above the ε asked for
        rho -= 1e-9
    return rho


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
