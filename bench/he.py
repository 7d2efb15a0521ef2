"""The HE engine side by side with numpy, at 100k and 1M rows, in one run.

Each step runs in a fresh subprocess so its peak RSS (ru_maxrss, main process only: encryption
workers are separate processes with their own) is its own:

- build: ``encrypt_columns`` of a synthetic table (x: float in declared bounds [0, 200],
  "products"; s: float in [0, 5000], "sums"; g: 8 categories, "products"; no buckets; neither has
  few distinct values, so no value series; at 1M rows a few x clamp to 0, so x also has a
  contributors series: 10 series at 100k, 11 at 1M) with 1 and with 2 encryption processes; throughput counts every encrypted value (rows x series) over the whole call,
  including the profiling pass and the worker start-up. The provider declares the group-by pair
  (g, x), so the build also writes its product totals (x and its contributors, where some value
  clamps to 0, times each category indicator: one ciphertext each);
- compute: what an HE worker does for one job, given the public contexts already loaded (they
  are cached per worker process): ``Operation.compute`` of mean(x), mean(s) and
  group_by(g, mean x), median of 3 after one warm-up; numpy's mean of the same column in memory
  is the baseline. Decryption and finishing are the custodian's and not timed here. An
  unfiltered mean reads each series' materialised total (one ciphertext written at build time);
  the declared group-by reads its product totals, and the same group-by on the same store with
  the product totals left out of the layout (an undeclared pair) streams every chunk, side by side.

Bytes per value count every blob of the store (series, packs; before packing the series' totals and
the product totals) over rows x series. Stores are packed (layout version 4): each series' tail
(rows % slots) and every total share ciphertexts. A third step, ``size``, builds the same table at
100, 442, 1,024 and 4,097 rows (1 encryption process), and the demo's hospital registry
(``dataspace.demo.synthetic``, its declared bounds, buckets and group-by) at 100 and 442 rows,
packed and as the version-2 layout wrote it, side by side. Keys are the store builder's
(``keys.store_keys``): the N = 4096 sets up to 1,024 rows (``params``); the bench table at 100
and 442 rows is also built with N = 8192 keys, side by side, with the CPU seconds of a worker's
compute and the custodian's decryption and the relative error of a declared and an undeclared
group-by and a variance on both.

Stores are written with seeded symmetric ciphertexts (``dataspace.compute.he.seeded``); every
size, the 2-process builds and the compute step are also run with full ciphertexts (as every
store before seeding), side by side: sizes, encryption throughput, the streamed group-by and the
cost of loading one ciphertext (a seeded one expands its seed on load).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import metric, write_result

ROOT = Path(__file__).resolve().parent.parent
BATCH_ROWS = 65_536
SCHEMA: list[dict[str, Any]] = [
    {"name": "x", "type": "float", "nulls": 0},
    {"name": "s", "type": "float", "nulls": 0},
    {"name": "g", "type": "categorical", "nulls": 0, "cardinality": 8, "categories": [f"g{i}" for i in range(8)]},
]


def batches(rows: int) -> Iterator[Any]:
    """Deterministic synthetic batches, generated as they are read (bounded memory)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(42)
    labels = np.array([f"g{i}" for i in range(8)])
    for start in range(0, rows, BATCH_ROWS):
        n = min(BATCH_ROWS, rows - start)
        yield pa.record_batch(
            {"x": rng.normal(100, 20, n), "s": rng.uniform(0, 5000, n), "g": labels[rng.integers(0, 8, n)]}
        )


REGISTRY_SCHEMA: list[dict[str, Any]] = [
    {"name": "record_id", "type": "text", "nulls": 0},
    {"name": "age", "type": "integer", "nulls": 0},
    {"name": "sex", "type": "categorical", "nulls": 0, "cardinality": 2, "categories": ["F", "M"]},
    {"name": "region", "type": "categorical", "nulls": 0, "cardinality": 8},
    {"name": "bmi", "type": "float", "nulls": 0},
    {"name": "systolic_bp", "type": "integer", "nulls": 0},
    {"name": "cholesterol", "type": "float", "nulls": 0},
    {"name": "diagnosis", "type": "categorical", "nulls": 0, "cardinality": 6},
    {"name": "cost", "type": "float", "nulls": 0},
    {"name": "admitted_on", "type": "date", "nulls": 0},
]


def registry(rows: int) -> tuple[list[dict[str, Any]], Any, Any]:
    """The demo's registry: (schema, batches factory, build options as its provider declares them)."""
    import pyarrow as pa

    from dataspace.compute.he.profiling import StoreOptions
    from dataspace.demo.synthetic import DIAGNOSES, REGIONS, REGISTRY_ENCRYPTION, registry_frames

    schema = [dict(column) for column in REGISTRY_SCHEMA]
    schema[3]["categories"], schema[7]["categories"] = list(REGIONS), list(DIAGNOSES)
    encryption: dict[str, Any] = REGISTRY_ENCRYPTION
    options = StoreOptions(
        bounds={column: (float(lo), float(hi)) for column, (lo, hi) in encryption["bounds"].items()},
        buckets={column: [float(e) for e in edges] for column, edges in encryption["buckets"].items()},
        group_by=encryption["group_by"],
        quantile_buckets=0,
        workers=1,
    )

    def frames() -> Iterator[Any]:
        for frame in registry_frames(rows):
            yield pa.RecordBatch.from_pandas(frame.astype({"admitted_on": "datetime64[s]"}), preserve_index=False)

    return schema, frames, options


def step_size(kind: str, rows: int, pack: bool, seeded: bool = True, ring: str = "auto") -> dict[str, Any]:
    """The bytes of one store: the bench table's or the demo registry's, packed or not, with
    seeded or full ciphertexts, with the keys the store builder chooses (``ring`` "auto": the
    N = 4096 sets up to ``SMALL_MAX_ROWS`` rows) or N = 8192 keys ("8192", and every unpacked
    store). For the bench table, also what a small ring costs: the CPU seconds of a worker's
    compute and the custodian's decryption (median of 5 after a warm-up) of a declared and an
    undeclared group-by mean and a variance, and their largest relative error against numpy."""
    import dataclasses
    import statistics
    import time

    import pyarrow as pa

    from dataspace.compute.he.encryption import encrypt_columns
    from dataspace.compute.he.keys import generate_keys, load_public_context, load_secret_context, store_keys
    from dataspace.compute.he.layout import StoreLayout
    from dataspace.compute.he.operations import get_operation
    from dataspace.compute.he.params import Level
    from dataspace.compute.he.profiling import StoreOptions
    from dataspace.compute.he.store import read_series
    from dataspace.vault import blobs

    if kind == "registry":
        schema, frames, options = registry(rows)
    else:
        schema, options = (
            SCHEMA,
            StoreOptions(
                levels={"s": Level.SUMS},
                bounds={"x": (0, 200), "s": (0, 5000)},
                quantile_buckets=0,
                workers=1,
                group_by={"g": ["x"]},
            ),
        )

        def frames() -> Iterator[Any]:
            return batches(rows)

    if ring == "auto" and pack:
        keys = store_keys(rows=rows, levels={Level.SUMS})  # as the store builder chooses them
    else:
        keys = {level: generate_keys(level) for level in (Level.SUMS, Level.PRODUCTS)}
    layout = encrypt_columns(
        batches=frames,
        schema=schema,
        rows=rows,
        options=dataclasses.replace(options, pack=pack, seeded=seeded),
        keys=keys,
        blob_prefix=f"he/size-{kind}-{rows}-{pack}-{seeded}",
    )
    names = layout.blob_names()
    store_bytes = sum(blobs.size(name) for name in names)
    ciphertexts = sum(layout.series[k].chunks for k in layout.series) + len(layout.packs)
    if not pack:
        ciphertexts += len(layout.series) + len(layout.products)
    result: dict[str, Any] = {
        "rows": rows,
        "series": len(layout.series),
        "products": len(layout.products),
        "packs": len(layout.packs),
        "ciphertexts": ciphertexts,
        "store_bytes": store_bytes,
        "bytes_per_value": store_bytes / (rows * len(layout.series)),
        "ring": layout.param_set(Level.PRODUCTS).poly_modulus_degree,
    }
    if kind != "table" or not pack:
        return result
    table = pa.Table.from_batches(list(batches(rows)))
    public = {level: load_public_context(pair.public_context) for level, pair in keys.items()}
    secret = {level: load_secret_context(pair.secret_context) for level, pair in keys.items()}
    undeclared = StoreLayout.from_json({**layout.to_json(), "products": []})
    cases = {
        "group_by_declared": ("group_by", {"by": "g", "aggregate": "mean", "column": "x"}, layout),
        "group_by_undeclared": ("group_by", {"by": "g", "aggregate": "mean", "column": "x"}, undeclared),
        "variance": ("variance", {"column": "x"}, layout),
    }

    def cpu(fn: Any) -> float:
        fn()
        runs = []
        for _ in range(5):
            start = time.process_time()
            fn()
            runs.append(time.process_time() - start)
        return statistics.median(runs)

    def errors(he: Any, ref: Any) -> list[float]:
        if isinstance(ref, dict):
            return [e for key in ref for e in errors(he[key], ref[key])]
        if isinstance(ref, int | float) and not isinstance(ref, bool):
            return [abs(he - ref) / max(1.0, abs(ref))]
        return []

    for label, (name, params, store) in cases.items():
        operation = get_operation(name)
        normalised = operation.validate(params, store)

        def compute(store: StoreLayout = store, operation: Any = operation, normalised: Any = normalised) -> Any:
            return operation.compute(normalised, store, public, lambda key: read_series(store, key))

        encrypted = compute()

        def decrypt(
            store: StoreLayout = store,
            operation: Any = operation,
            normalised: Any = normalised,
            encrypted: Any = encrypted,
        ) -> Any:
            return operation.decrypt(normalised, store, encrypted, secret)

        released = operation.finish(normalised, store, {a.name: a.value for a in decrypt()})
        result[f"{label}_compute_cpu_s"] = cpu(compute)
        result[f"{label}_decrypt_cpu_s"] = cpu(decrypt)
        result[f"{label}_max_rel_error"] = max(errors(released, operation.reference(normalised, table)))
    return result


def step_build(rows: int, workers: int, out: Path, seeded: bool = True) -> dict[str, Any]:
    import resource
    import time

    from dataspace.compute.he.encryption import encrypt_columns
    from dataspace.compute.he.keys import generate_keys
    from dataspace.compute.he.params import Level
    from dataspace.compute.he.profiling import StoreOptions
    from dataspace.vault import blobs

    keys = {level: generate_keys(level) for level in (Level.SUMS, Level.PRODUCTS)}
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    layout = encrypt_columns(
        batches=lambda: batches(rows),
        schema=SCHEMA,
        rows=rows,
        options=StoreOptions(
            levels={"s": Level.SUMS},
            bounds={"x": (0, 200), "s": (0, 5000)},
            quantile_buckets=0,
            workers=workers,
            group_by={"g": ["x"]},
            seeded=seeded,
        ),
        keys=keys,
        blob_prefix="he/bench",
    )
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sizes: dict[str, list[int]] = {"sums": [], "products": []}
    for info in layout.series.values():
        total = blobs.size(info.total_blob) if info.total_blob else 0
        sizes[info.level].append(blobs.size(info.blob_name) + total)
    for pack in layout.packs:  # tails and totals: counted with their level's series
        sizes[pack.level].append(blobs.size(pack.blob_name))
    # A packed product total is one slot of a pack: its share of the pack's bytes.
    product_bytes = 0.0
    for product in layout.products.values():
        if product.blob_name:
            product_bytes += blobs.size(product.blob_name)
        elif product.total is not None:
            product_bytes += blobs.size(layout.packs[product.total.pack].blob_name) / layout.slots
    (out / "layout.json").write_text(json.dumps(layout.to_json()))
    for level, pair in keys.items():
        (out / f"{level}.public").write_bytes(pair.public_context)
    return {
        "seconds": seconds,
        "values": rows * len(layout.series),
        "series": len(layout.series),
        "bytes_per_value": {
            level: sum(s) / (rows * sum(1 for i in layout.series.values() if i.level == level))
            for level, s in sizes.items()
        },
        "bytes_per_value_all": sum(blobs.size(name) for name in layout.blob_names()) / (rows * len(layout.series)),
        "bytes_per_value_series": (sum(blobs.size(name) for name in layout.blob_names()) - product_bytes)
        / (rows * len(layout.series)),
        "store_bytes": sum(blobs.size(name) for name in layout.blob_names()),
        "product_bytes": product_bytes,
        "products": len(layout.products),
        "peak_mb": peak_mb,
        "baseline_mb": baseline_mb,
    }


def step_compute(rows: int, out: Path) -> dict[str, Any]:
    import resource
    import statistics
    import time

    import numpy as np

    from dataspace.compute.he.keys import load_public_context
    from dataspace.compute.he.layout import StoreLayout
    from dataspace.compute.he.operations import get_operation
    from dataspace.compute.he.store import read_series

    data = json.loads((out / "layout.json").read_text())
    layout = StoreLayout.from_json(data)
    # The same store as an undeclared pair sees it: no product totals, so the group-by streams.
    undeclared = StoreLayout.from_json({**data, "products": []})
    contexts = {level: load_public_context((out / f"{level}.public").read_bytes()) for level in ("sums", "products")}
    x = np.concatenate([batch.column("x").to_numpy() for batch in batches(rows)])

    def timed(fn: Any, repeat: int = 3) -> float:
        fn()  # warm-up: page cache, allocator
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    def he(name: str, params: dict[str, Any], store: StoreLayout = layout) -> float:
        operation = get_operation(name)
        normalised = operation.validate(params, store)
        return timed(lambda: operation.compute(normalised, store, contexts, lambda key: read_series(store, key)))

    group_mean = {"by": "g", "aggregate": "mean", "column": "x"}

    result = {
        "numpy_mean": timed(lambda: float(np.mean(x)), repeat=51),
        "he_mean_products": he("mean", {"column": "x"}),
        "he_mean_sums": he("mean", {"column": "s"}),
        "he_group_mean": he("group_by", group_mean),
        "he_group_mean_streamed": he("group_by", group_mean, undeclared),
    }
    # What a worker pays per stored ciphertext to load it (a seeded one: its second polynomial
    # expanded from the seed), products level.
    import tenseal as ts

    key = next(k for k, info in layout.series.items() if info.level == "products" and info.chunks)
    chunk = next(iter(read_series(layout, key)))
    result["load_ms_products"] = 1000 * timed(lambda: ts.ckks_vector_from(contexts["products"], chunk), repeat=51)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def run_step(args: list[str], var_dir: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "BLOB_ROOT"}}
    env.update(DJANGO_SETTINGS_MODULE="dataspace.settings", REDLAKE_VAR_DIR=str(var_dir))
    output = subprocess.run(
        [sys.executable, __file__, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def child(argv: list[str]) -> None:
    import django

    django.setup()
    kind, rows = argv[0], int(argv[1])
    if kind == "size":
        ring = argv[5] if len(argv) > 5 else "auto"
        result = step_size(argv[2], rows, argv[3] == "packed", argv[4] == "seeded", ring)
    elif kind == "build":
        result = step_build(rows, int(argv[3]), Path(argv[2]), argv[4] == "seeded")
    else:
        result = step_compute(rows, Path(argv[2]))
    print(json.dumps(result))


def main() -> None:
    load_start = os.getloadavg()[0]  # other work on the machine moves every absolute figure
    work = Path(tempfile.mkdtemp(prefix="redlake-bench-he-"))
    results: dict[int, dict[str, Any]] = {}
    sizes: dict[str, dict[str, Any]] = {}
    try:
        for kind, rows, layout, form, ring in (
            ("table", 100, "packed", "seeded", "auto"),
            ("table", 442, "packed", "seeded", "auto"),
            ("table", 1_024, "packed", "seeded", "auto"),
            ("table", 4_097, "packed", "seeded", "auto"),
            ("table", 100, "packed", "full", "auto"),
            ("table", 442, "packed", "full", "auto"),
            ("table", 4_097, "packed", "full", "auto"),
            ("table", 100, "packed", "seeded", "8192"),
            ("table", 442, "packed", "seeded", "8192"),
            ("registry", 100, "packed", "seeded", "auto"),
            ("registry", 442, "packed", "seeded", "auto"),
            ("registry", 442, "packed", "full", "auto"),
            ("registry", 442, "version2", "full", "8192"),
        ):
            label = f"{kind}-{rows}-{layout}-{form}" + ("-8192" if ring == "8192" and layout == "packed" else "")
            sizes[label] = run_step(["size", str(rows), kind, layout, form, ring], work / f"var-{label}")
            print(label, json.dumps(sizes[label]), file=sys.stderr)
        for rows in (100_000, 1_000_000):
            runs: dict[str, Any] = {}
            for workers, form in ((1, "seeded"), (2, "seeded"), (2, "full")):
                name = f"{rows}-{workers}-{form}"
                var_dir, out = work / f"var-{name}", work / f"out-{name}"
                out.mkdir(parents=True)
                runs[f"build{workers}-{form}"] = run_step(["build", str(rows), str(out), str(workers), form], var_dir)
            for form in ("seeded", "full"):
                name = f"{rows}-2-{form}"
                runs[f"compute-{form}"] = run_step(
                    ["compute", str(rows), str(work / f"out-{name}")], work / f"var-{name}"
                )
            results[rows] = runs
            print(rows, json.dumps(runs), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    metrics = []
    for rows, runs in results.items():
        label = "100k" if rows == 100_000 else "1M"
        compute, build1, build2 = runs["compute-seeded"], runs["build1-seeded"], runs["build2-seeded"]
        full_compute, full_build = runs["compute-full"], runs["build2-full"]
        metrics += [
            metric(
                f"HE group-by mean, 8 groups, compute seconds ({label} rows, undeclared pair: chunks streamed, "
                "full ciphertexts: no seeds to expand)",
                full_compute["he_group_mean_streamed"],
                "s",
                target=None,
                better="lower",
                baseline=("seeded ciphertexts seconds", compute["he_group_mean_streamed"]),
            ),
            metric(
                f"loading one stored ciphertext, ms, products level ({label} rows store)",
                compute["load_ms_products"],
                "ms",
                target=None,
                better="lower",
                baseline=("full ciphertext ms", full_compute["load_ms_products"]),
            ),
            metric(
                f"encryption throughput, 2 processes, full ciphertexts ({label} rows)",
                full_build["values"] / full_build["seconds"],
                "values/s",
                target=None,
                better="higher",
                baseline=("seeded ciphertexts values/s", build2["values"] / build2["seconds"]),
            ),
            metric(
                f"HE mean compute / numpy mean ({label} rows, products level)",
                compute["he_mean_products"] / compute["numpy_mean"],
                "ratio",
                target=100.0 if rows == 1_000_000 else None,
                better="lower",
                baseline=("numpy mean seconds", compute["numpy_mean"]),
            ),
            metric(
                f"HE mean compute seconds ({label} rows, products level)",
                compute["he_mean_products"],
                "s",
                target=None,
                better="lower",
            ),
            metric(
                f"HE mean compute seconds ({label} rows, sums level)",
                compute["he_mean_sums"],
                "s",
                target=None,
                better="lower",
                baseline=("numpy mean seconds", compute["numpy_mean"]),
            ),
            metric(
                f"HE group-by mean, 8 groups, compute seconds ({label} rows, declared pair: product totals)",
                compute["he_group_mean"],
                "s",
                target=1.5 if rows == 1_000_000 else None,
                better="lower",
                baseline=("undeclared pair (chunks streamed) seconds", compute["he_group_mean_streamed"]),
            ),
            metric(
                f"HE group-by mean, 8 groups, compute seconds ({label} rows, undeclared pair: chunks streamed)",
                compute["he_group_mean_streamed"],
                "s",
                target=None,
                better="lower",
            ),
            metric(
                f"encryption throughput, 1 process ({label} rows)",
                build1["values"] / build1["seconds"],
                "values/s",
                target=None,
                better="higher",
            ),
            metric(
                f"encryption throughput, 2 processes ({label} rows)",
                build2["values"] / build2["seconds"],
                "values/s",
                target=2_000_000 if rows == 1_000_000 else None,
                better="higher",
                baseline=("1 process values/s", build1["values"] / build1["seconds"]),
            ),
            metric(
                f"build peak RSS, main process, 2 processes ({label} rows)",
                build2["peak_mb"],
                "MB",
                target=None,
                better="lower",
                baseline=("RSS before build, keys generated", build2["baseline_mb"]),
            ),
            metric(
                f"compute peak RSS ({label} rows, incl. the numpy column)",
                compute["peak_mb"],
                "MB",
                target=None,
                better="lower",
            ),
        ]
    big, big_full = results[1_000_000]["build2-seeded"], results[1_000_000]["build2-full"]
    for rows in (100, 442, 4_097):
        size, full = sizes[f"table-{rows}-packed-seeded"], sizes[f"table-{rows}-packed-full"]
        metrics.append(
            metric(
                f"ciphertext bytes per value, whole store, {rows:,} rows ({size['series']} series, "
                f"{size['products']} product totals, {size['ciphertexts']} ciphertexts, N = {size['ring']})",
                size["bytes_per_value"],
                "bytes",
                target=64,
                better="lower",
                baseline=("full ciphertexts bytes per value", full["bytes_per_value"]),
            )
        )
    largest_small = sizes["table-1024-packed-seeded"]
    metrics.append(
        metric(
            f"ciphertext bytes per value, whole store, 1,024 rows (the largest small store, "
            f"{largest_small['ciphertexts']} ciphertexts, N = {largest_small['ring']})",
            largest_small["bytes_per_value"],
            "bytes",
            target=64,
            better="lower",
        )
    )
    for rows in (100, 442):
        small, large = sizes[f"table-{rows}-packed-seeded"], sizes[f"table-{rows}-packed-seeded-8192"]
        metrics.append(
            metric(
                f"small store (N = 4096) bytes per value, {rows} rows",
                small["bytes_per_value"],
                "bytes",
                target=64,
                better="lower",
                baseline=("N = 8192 keys bytes per value", large["bytes_per_value"]),
            )
        )
        for label, what in (
            ("group_by_declared", "declared group-by mean (product totals)"),
            ("group_by_undeclared", "undeclared group-by mean (products over the tails)"),
            ("variance", "variance (a product over the tails)"),
        ):
            metrics += [
                metric(
                    f"small store (N = 4096), {rows} rows: {what}, worker compute CPU seconds",
                    small[f"{label}_compute_cpu_s"],
                    "s",
                    target=None,
                    better="lower",
                    baseline=("N = 8192 CPU seconds", large[f"{label}_compute_cpu_s"]),
                ),
                metric(
                    f"small store (N = 4096), {rows} rows: {what}, custodian decryption CPU seconds",
                    small[f"{label}_decrypt_cpu_s"],
                    "s",
                    target=None,
                    better="lower",
                    baseline=("N = 8192 CPU seconds", large[f"{label}_decrypt_cpu_s"]),
                ),
                metric(
                    f"small store (N = 4096), {rows} rows: {what}, largest relative error before noise, ppm",
                    1e6 * small[f"{label}_max_rel_error"],
                    "ppm",
                    target=None,
                    better="lower",
                    baseline=("N = 8192 largest relative error, ppm", 1e6 * large[f"{label}_max_rel_error"]),
                ),
            ]
    packed, old = sizes["registry-442-packed-seeded"], sizes["registry-442-version2-full"]
    packed_full = sizes["registry-442-packed-full"]
    metrics += [
        metric(
            f"demo registry, 442 rows: ciphertext bytes per value, whole store ({packed['series']} series, "
            f"{packed['products']} product totals, {packed['ciphertexts']} ciphertexts)",
            packed["bytes_per_value"],
            "bytes",
            target=64,
            better="lower",
            baseline=("version-2 layout (before packing) bytes per value", old["bytes_per_value"]),
        ),
        metric(
            f"demo registry, 100 rows: ciphertext bytes per value, whole store ({sizes['registry-100-packed-seeded']['series']} "
            f"series, {sizes['registry-100-packed-seeded']['ciphertexts']} ciphertexts)",
            sizes["registry-100-packed-seeded"]["bytes_per_value"],
            "bytes",
            target=64,
            better="lower",
        ),
        metric(
            "demo registry, 442 rows: ciphertext bytes per value, packed, full ciphertexts (before seeding)",
            packed_full["bytes_per_value"],
            "bytes",
            target=None,
            better="lower",
        ),
        metric(
            "demo registry, 442 rows: whole store bytes, packed",
            packed["store_bytes"],
            "bytes",
            target=None,
            better="lower",
            baseline=(f"version-2 layout ({old['ciphertexts']} ciphertexts) bytes", old["store_bytes"]),
        ),
    ]
    metrics += [
        metric(
            "ciphertext bytes per value, sums level",
            big["bytes_per_value"]["sums"],
            "bytes",
            target=32,
            better="lower",
            baseline=("full ciphertexts", big_full["bytes_per_value"]["sums"]),
        ),
        metric(
            "ciphertext bytes per value, products level",
            big["bytes_per_value"]["products"],
            "bytes",
            target=64,
            better="lower",
            baseline=("full ciphertexts", big_full["bytes_per_value"]["products"]),
        ),
        metric(
            f"ciphertext bytes per value, whole store, 1M rows ({big['series']} series + {big['products']} "
            "product totals)",
            big["bytes_per_value_all"],
            "bytes",
            target=64,
            better="lower",
            baseline=("full ciphertexts", big_full["bytes_per_value_all"]),
        ),
        metric(
            f"storage of the declared group-by's {big['products']} product totals (1M rows; packed: their slots' "
            "share of a pack)",
            big["product_bytes"],
            "bytes",
            target=None,
            better="lower",
            baseline=("whole store bytes, product totals included", big["store_bytes"]),
        ),
    ]
    notes = (
        "Bytes per value: store bytes / (rows x series), every blob counted; stores packed (layout version 4; N = 4096 keys up to 1,024 rows unless named N = 8192) "
        "unless named version-2, with seeded symmetric ciphertexts unless named full (the second polynomial "
        "saved as its PRNG seed; full ciphertexts are every store built before, and the version-2 store). Synthetic table: x ~ N(100, 20) products level, s ~ U(0, 5000) sums level, g 8 categories; no quantile "
        "buckets; group-by pair (g, x) declared (product totals of x and its contributors by each category). "
        "Both group-by figures come from the same store in the same process, one after the other. Compute: Operation.compute with public contexts loaded, median of 3 after a warm-up "
        "(unfiltered depth-0 terms read the series' materialised totals, products stream the chunks), "
        "the e2e job target (p50 <= 3 s) also covers queueing, decryption and release. Encryption throughput is "
        "the whole encrypt_columns call (profiling pass, worker start-up, encryption, blob writes)."
    )
    notes += (
        f" Load average (1 min) {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on "
        f"{os.cpu_count()} cores: compare figures within one run."
    )
    print(write_result("he", metrics, notes))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        child(sys.argv[1:])
    else:
        main()
