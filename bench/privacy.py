"""Utility at a fixed ε, side by side with the plaintext answer on the same data.

The demo registry (1M rows, the provider's declared bounds) is encrypted by the real engine;
each operation is computed over its ciphertexts and decrypted once (the exact aggregates the
custodian would see); then the custodian's own release (``custody._noised``: OpenDP's Gaussian
for the bounds-derived sensitivities, ρ from ε = 1 at the space's δ, split over the aggregates;
then the operation's finishing) is drawn 200 times and compared with numpy's answer on the
plaintext (``Operation.reference``).

- mean(cost): the median relative error (target ≤ 0.1%) and its RMSE against the RMSE of the
  mechanism a mean needs at the same ρ (Gaussian noise on the sum and the count only, ρ split
  between them; delta method): a ratio near 1 means no budget spent on anything else (target
  ≤ 1.2×).
- group-by mean(cost) by region, and the linear regression of systolic_bp on age and bmi: the
  median relative error of the group means and of the coefficients.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import metric, write_result

ROWS = 1_000_000
DRAWS = 200
EPSILON = 1.0


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="redlake-bench-privacy-"))
    os.environ.update(DJANGO_SETTINGS_MODULE="dataspace.settings", REDLAKE_VAR_DIR=str(work))
    os.environ.pop("DATABASE_URL", None)
    try:
        import django

        django.setup()
        metrics = measure()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_result(
        "privacy",
        metrics,
        notes=f"In-process: the real HE engine and custodian code on {ROWS:,} rows of the demo registry "
        f"(declared bounds), ε = {EPSILON} per job at δ = 1e-9 (zCDP), {DRAWS} releases per operation.",
    )
    print(path.read_text())


def measure() -> list[dict[str, Any]]:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from dataspace.compute import custody
    from dataspace.compute.he.encryption import encrypt_columns
    from dataspace.compute.he.keys import generate_keys, load_public_context, load_secret_context
    from dataspace.compute.he.operations import get_operation
    from dataspace.compute.he.params import Level
    from dataspace.compute.he.profiling import StoreOptions
    from dataspace.compute.he.store import read_series
    from dataspace.demo.synthetic import REGISTRY_ENCRYPTION, registry_frames
    from dataspace.privacy import services as privacy

    frame = pd.concat(list(registry_frames(ROWS)))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema = [
        {"name": "age", "type": "integer", "nulls": 0},
        {"name": "bmi", "type": "float", "nulls": 0},
        {"name": "systolic_bp", "type": "integer", "nulls": 0},
        {"name": "cost", "type": "float", "nulls": 0},
        {
            "name": "region",
            "type": "categorical",
            "nulls": 0,
            "cardinality": int(frame.region.nunique()),
            "categories": sorted(frame.region.unique().tolist()),
        },
    ]
    table = table.select([c["name"] for c in schema])
    keys = {Level.PRODUCTS: generate_keys(Level.PRODUCTS)}
    declared = cast(dict[str, list[float]], REGISTRY_ENCRYPTION["bounds"])
    bounds = {name: (low, high) for name, (low, high) in declared.items() if name in table.column_names}
    layout = encrypt_columns(
        batches=lambda: iter(table.to_batches(max_chunksize=65_536)),
        schema=schema,
        rows=ROWS,
        options=StoreOptions(bounds=bounds, quantile_buckets=0),
        keys=keys,
        blob_prefix="he/bench-privacy",
    )
    public: dict[str, Any] = {level.value: load_public_context(pair.public_context) for level, pair in keys.items()}
    secret: dict[str, Any] = {level.value: load_secret_context(pair.secret_context) for level, pair in keys.items()}
    rho = privacy.rho_of(EPSILON)

    def releases(operation_name: str, params: dict[str, Any]) -> tuple[list[Any], Any, list[Any]]:
        operation = get_operation(operation_name)
        valid = operation.validate(params, layout)
        encrypted = operation.compute(valid, layout, public, lambda key: read_series(layout, key))
        aggregates = operation.decrypt(valid, layout, encrypted, secret)
        reference = operation.reference(valid, table)
        answers = [operation.finish(valid, layout, custody._noised(aggregates, rho).values) for _ in range(DRAWS)]
        return answers, reference, aggregates

    metrics: list[dict[str, Any]] = []
    # mean(cost)
    answers, reference, aggregates = releases("mean", {"column": "cost"})
    errors = np.array([a["mean"] - reference["mean"] for a in answers])
    relative = float(np.median(np.abs(errors)) / abs(reference["mean"]))
    n, total = float(reference["count"]), float(reference["mean"]) * float(reference["count"])
    sum_sensitivity = max(abs(b) for b in bounds["cost"])
    # The mechanism a mean needs: the sum and the count, each with rho / 2.
    sigma_sum, sigma_count = sum_sensitivity / math.sqrt(rho), 1.0 / math.sqrt(rho)
    theoretical_rmse = math.sqrt(sigma_sum**2 / n**2 + (total / n**2) ** 2 * sigma_count**2)
    measured_rmse = float(np.sqrt(np.mean(errors**2)))
    metrics.append(
        metric(
            f"mean(cost), 1M rows, ε = {EPSILON}: median relative error",
            relative * 100,
            "%",
            target=0.1,
            better="lower",
            baseline=("numpy mean(cost) (exact)", float(reference["mean"])),
        )
    )
    metrics.append(
        metric(
            "mean(cost): measured RMSE / RMSE of the Gaussian on sum and count alone (no budget wasted)",
            measured_rmse / theoretical_rmse,
            "ratio",
            target=1.2,
            better="lower",
            baseline=("theoretical RMSE", theoretical_rmse),
        )
    )
    metrics.append(
        metric(
            "mean(cost): aggregates sharing the job's ρ (sum, counts)",
            float(len(aggregates)),
            "count",
            target=None,
            better="lower",
        )
    )
    # group-by mean(cost) by region
    answers, reference, _ = releases("group_by", {"by": "region", "aggregate": "mean", "column": "cost"})
    group_errors = [
        abs(a["groups"][g]["mean"] - r["mean"]) / abs(r["mean"])
        for a in answers
        for g, r in reference["groups"].items()
        if a["groups"][g]["mean"] is not None
    ]
    metrics.append(
        metric(
            f"group-by mean(cost) by region (8 groups), ε = {EPSILON}: median relative error",
            statistics.median(group_errors) * 100,
            "%",
            target=None,
            better="lower",
        )
    )
    # linear regression
    answers, reference, _ = releases("linear_regression", {"target": "systolic_bp", "features": ["age", "bmi"]})
    coefficient_errors = [
        abs(a["coefficients"][f] - c) / abs(c) for a in answers for f, c in reference["coefficients"].items()
    ]
    metrics.append(
        metric(
            f"linear regression systolic_bp ~ age + bmi, ε = {EPSILON}: median relative error of the coefficients",
            statistics.median(coefficient_errors) * 100,
            "%",
            target=None,
            better="lower",
        )
    )
    return metrics


if __name__ == "__main__":
    main()
