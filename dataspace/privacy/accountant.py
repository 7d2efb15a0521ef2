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
from typing import Any

from dataspace.privacy import dp

_UNIT = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)


def _profile(rho: float) -> Any:
    """OpenDP's privacy profile (ε ↦ δ) of a ρ-zCDP release: a Gaussian mechanism of sensitivity 1
    whose loss is exactly ρ stands for any such release."""
    measurement = dp.m.make_gaussian(*_UNIT, scale=1.0 / math.sqrt(2.0 * rho))
    return dp.c.make_zCDP_to_approxDP(measurement).map(1.0)


def epsilon_for_rho(rho: float, delta: float) -> float:
    """The ε such that a ρ-zCDP release is (ε, δ)-DP, by OpenDP's conversion."""
    if rho <= 0:
        return 0.0
    return float(_profile(rho).epsilon(delta))


def _log_delta_over(rho: float, epsilon: float, delta: float) -> float:
    """ln(δ(ε) / δ) for a ρ-zCDP release, δ(ε) by OpenDP: ≤ 0 exactly when the release is (ε, δ)-DP.

    One δ(ε) is a single evaluation of OpenDP's bound (~0.2 ms); its ε(δ) inverts that by a
    bisection over ε (~3 ms), which is why the search below asks for δ."""
    return math.log(max(float(_profile(rho).delta(epsilon)), 1e-300) / delta)


@lru_cache(maxsize=4096)
def rho_for_epsilon(epsilon: float, delta: float) -> float:
    """The largest ρ whose zCDP guarantee implies (ε, δ)-DP, rounded down to the nano-ρ the
    chain counts in.

    δ(ε) grows with ρ, so the root of ln(δ(ε)/δ) is found by the Illinois variant of regula
    falsi (superlinear: about eight evaluations, not the ~50 of a bisection to a nano-ρ), bracketed
    below by the textbook bound ρ + 2√(ρ ln 1/δ) = ε (OpenDP's conversion is tighter, so its root
    lies above) and above by a few times that, never past ε itself."""
    if not math.isfinite(epsilon) or epsilon <= 0:
        return 0.0
    log_term = math.log(1 / delta)
    low = (math.sqrt(log_term + epsilon) - math.sqrt(log_term)) ** 2  # textbook root
    if low == 0:  # ε below ~1e-15: lost in the sum above, and far below one nano-ρ anyway
        return 0.0
    # OpenDP's root is within 2.1x the textbook one from ε = 0.001 up (1.02x at ε = 100); a
    # bracket this tight saves a third of the evaluations against one that ends at ε.
    high = min(epsilon, 3 * low)
    f_low, f_high = _log_delta_over(low, epsilon, delta), _log_delta_over(high, epsilon, delta)
    while f_low > 0:  # only where OpenDP's float bound gives up (ε near 1e6 it answers δ = 1)
        low, high, f_high = low / 2, low, f_low
        if low < 1e-9:
            return 0.0
        f_low = _log_delta_over(low, epsilon, delta)
    while f_high <= 0 and high < epsilon:
        low, f_low = high, f_high
        high = min(epsilon, 2 * high)
        f_high = _log_delta_over(high, epsilon, delta)
    side = 0
    for _ in range(60):
        # Done once no nano-ρ lies between the two ends: the answer is the last one at or below low.
        if math.floor(low * 1e9) == math.floor(high * 1e9) or f_low == f_high:
            break
        # Interpolated in 1/√ρ (the noise scale), where ln δ is nearly straight: 8 evaluations
        # where interpolating in ρ takes 11 to 13.
        x_low, x_high = 1 / math.sqrt(low), 1 / math.sqrt(high)
        middle = ((x_low * f_high - x_high * f_low) / (f_high - f_low)) ** -2
        f_middle = _log_delta_over(middle, epsilon, delta)
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
    while rho > 0 and _log_delta_over(rho, epsilon, delta) > 0:  # never above the ε asked for
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
