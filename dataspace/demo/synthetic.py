"""A deterministic synthetic hospital registry, for the demo, tests and benchmarks.

Realistic shape (correlated clinical measures, skewed costs, categorical regions and diagnoses)
at any size, generated in chunks so a million rows never sit in memory at once.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pandas as pd

REGIONS = ["north", "south", "east", "west", "central", "coast", "highlands", "islands"]
DIAGNOSES = ["healthy", "hypertension", "diabetes", "asthma", "cardiac", "oncology"]
COLUMNS = [
    "record_id",
    "age",
    "sex",
    "region",
    "bmi",
    "systolic_bp",
    "cholesterol",
    "diagnosis",
    "cost",
    "admitted_on",
]
CHUNK_ROWS = 100_000
# What the registry's provider declares at upload (the ``encryption`` field): the clamping range of
# every numeric column (the noise on every answer is sized from it) and buckets for histograms and
# filters. Wide enough that no generated value is clamped.
REGISTRY_ENCRYPTION = {
    "bounds": {
        "age": [0, 120],
        "bmi": [10, 60],
        "systolic_bp": [60, 260],
        "cholesterol": [0, 15],
        "cost": [0, 50_000],
    },
    "buckets": {
        "age": [18, 30, 45, 60, 75, 95],
        "bmi": [18.5, 25, 30, 35, 40],
        "systolic_bp": [90, 120, 140, 160, 180],
    },
    # The demo's group-by (mean cost by region): prepared at ingest, one ciphertext per group.
    "group_by": {"region": ["cost"]},
}


def registry_frames(rows: int, *, seed: int = 7, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    start = 0
    while start < rows:
        n = min(chunk_rows, rows - start)
        age = np.clip(rng.normal(52, 18, n), 18, 95).astype(int)
        sex = rng.choice(["F", "M"], n)
        region = rng.choice(REGIONS, n, p=[0.18, 0.16, 0.14, 0.14, 0.12, 0.1, 0.08, 0.08])
        bmi = np.round(np.clip(rng.normal(26 + (age - 50) * 0.03, 4.5, n), 15, 55), 1)
        systolic = np.clip(rng.normal(110 + age * 0.4 + (bmi - 25) * 0.8, 12, n), 85, 220).astype(int)
        cholesterol = np.round(np.clip(rng.normal(4.2 + age * 0.015, 0.9, n), 2.0, 10.0), 2)
        risk = (systolic - 120) / 40 + (bmi - 25) / 10 + (age - 50) / 40
        weights = np.stack(
            [
                np.full(n, 2.0),
                1 + np.maximum(risk, 0),
                0.5 + np.maximum(risk, 0) * 0.6,
                np.full(n, 0.5),
                0.3 + np.maximum(risk, 0) * 0.4,
                0.2 + (age / 95) * 0.4,
            ],
            axis=1,
        )
        weights /= weights.sum(axis=1, keepdims=True)
        diagnosis = np.array(DIAGNOSES)[(weights.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)]
        cost = np.round(rng.lognormal(7.2 + np.isin(diagnosis, ["cardiac", "oncology"]) * 1.1, 0.6, n), 2)
        admitted = np.datetime64("2020-01-01") + rng.integers(0, 5 * 365, n).astype("timedelta64[D]")
        yield pd.DataFrame(
            {
                "record_id": [f"R{seed:02d}{i:09d}" for i in range(start, start + n)],
                "age": age,
                "sex": sex,
                "region": region,
                "bmi": bmi,
                "systolic_bp": systolic,
                "cholesterol": cholesterol,
                "diagnosis": diagnosis,
                "cost": cost,
                "admitted_on": admitted,
            }
        )
        start += n


def registry_csv_chunks(rows: int, *, seed: int = 7) -> Iterator[bytes]:
    """The registry as CSV bytes, header first, one chunk per frame."""
    for index, frame in enumerate(registry_frames(rows, seed=seed)):
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False, header=index == 0, date_format="%Y-%m-%d")
        yield buffer.getvalue().encode()
