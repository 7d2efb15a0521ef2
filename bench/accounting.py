"""What the web tier pays to price a DP job in ρ, side by side with OpenDP's own conversion, in one run.

A job that asks for a new ε is priced by ``accountant.rho_for_epsilon`` (cached per ε; every ε
here is new). Its search judges each candidate ρ by OpenDP's δ(ε) for the ρ-zCDP profile; the
baseline is one OpenDP ε(δ) for such a profile (``accountant.epsilon_for_rho``), which inverts
δ(ε) by bisection and is what the search evaluated at every step before (about 14 steps). Both in
this process, alternating, so both see the same load.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import metric, write_result

RUNS = 60
DELTA = 1e-9  # the space's default PRIVACY_DELTA


def main() -> None:
    from dataspace.privacy import accountant

    accountant.rho_for_epsilon(0.5, DELTA)  # imports and OpenDP's first calls, not timed
    conversions, inversions = [], []
    for run in range(RUNS):
        epsilon = 0.05 + run * 0.0137  # apart, so the cache never answers
        start = time.perf_counter()
        rho = accountant.rho_for_epsilon(epsilon, DELTA)
        conversions.append(time.perf_counter() - start)
        start = time.perf_counter()
        accountant.epsilon_for_rho(rho, DELTA)
        inversions.append(time.perf_counter() - start)
    conversion, inversion = statistics.median(conversions), statistics.median(inversions)
    metrics = [
        metric(
            "epsilon -> rho for a new epsilon, p50",
            conversion * 1000,
            "ms",
            target=None,
            better="lower",
            baseline=("one OpenDP epsilon(delta) of a rho-zCDP profile, p50 ms", inversion * 1000),
        ),
        metric(
            "epsilon -> rho / one OpenDP epsilon(delta)",
            conversion / inversion,
            "ratio",
            target=None,
            better="lower",
        ),
    ]
    notes = (
        f"{RUNS} new epsilons from 0.05 to {0.05 + (RUNS - 1) * 0.0137:.2f} at delta {DELTA:g}, each followed by the "
        f"baseline on its answer; in one process. Load average (1 min) at the end: {os.getloadavg()[0]:.1f}."
    )
    print(write_result("accounting", metrics, notes))


if __name__ == "__main__":
    main()
