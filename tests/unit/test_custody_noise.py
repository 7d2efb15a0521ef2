"""The custodian's noise: Laplace (OpenDP) with the job's epsilon split over its aggregates."""

from __future__ import annotations

import numpy as np

from dataspace.compute.he.operations import Aggregate
from dataspace.compute.noise import add_noise

AGGREGATES = [
    Aggregate(name="count", value=1000.0, sensitivity=1.0, cohort="count"),
    Aggregate(name="sum", value=52_000.0, sensitivity=128.0, cohort="count"),
]


def test_without_epsilon_nothing_is_added() -> None:
    values, noise = add_noise(AGGREGATES, 0.0)
    assert values == {"count": 1000.0, "sum": 52_000.0}
    assert noise == {"mechanism": "none"}


def test_each_aggregate_gets_its_share_of_epsilon() -> None:
    values, noise = add_noise(AGGREGATES, 0.5)
    # two aggregates share epsilon 0.5: scale = sensitivity * 2 / 0.5
    assert noise["scales"] == {"count": 4.0, "sum": 512.0}
    assert noise["mechanism"].startswith("laplace")
    assert values["count"] != 1000.0


def test_the_noise_has_the_laplace_spread() -> None:
    draws = np.array([add_noise(AGGREGATES[:1], 1.0)[0]["count"] - 1000.0 for _ in range(2000)])
    # Laplace(b = 1): mean absolute deviation 1, essentially never beyond 15
    assert 0.85 < np.abs(draws).mean() < 1.15
    assert np.abs(draws).max() < 15
