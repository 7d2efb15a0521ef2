"""Differential-privacy noise on released aggregates (OpenDP's Laplace mechanism)."""

from __future__ import annotations

from typing import Any

from dataspace.compute.he.operations import Aggregate


def add_noise(aggregates: list[Aggregate], epsilon: float) -> tuple[dict[str, float], dict[str, Any]]:
    """Laplace noise on every aggregate, the job's epsilon split evenly among them (basic
    composition): aggregate i gets scale sensitivity_i * m / epsilon."""
    if epsilon <= 0:
        return {a.name: a.value for a in aggregates}, {"mechanism": "none"}
    import opendp.prelude as dp

    dp.enable_features("contrib")
    share = len(aggregates) / epsilon
    noisy = {}
    scales = {}
    for aggregate in aggregates:
        scale = max(aggregate.sensitivity, 1e-12) * share
        measurement = dp.m.make_laplace(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=scale)
        noisy[aggregate.name] = float(measurement(float(aggregate.value)))
        scales[aggregate.name] = scale
    return noisy, {"mechanism": "laplace (OpenDP)", "epsilon": epsilon, "scales": scales}
