"""Ingest throughput and peak memory next to pandas reading the same CSV, in one run.

Each measured step runs in a fresh subprocess so its peak RSS (ru_maxrss) is its own. Ingest is
the whole path a provider's upload takes: hash + seal (AES-256-GCM) as bytes arrive, then the
task's decrypt + validate + schema inference. The CSV is synthetic (the demo registry).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import metric, write_result

ROOT = Path(__file__).resolve().parent.parent
# Alternating runs of each side, the fastest of each kept: on these VMs the CPU time of the same
# work moves by a quarter from one pass to the next (a validate pass took 278-346 ms of CPU in one
# process), so one pass per run left the ratio at 1.82x to 2.06x over three runs of the same code
# (bench/results/history/ingest-2026-11-29-avx512-best-of-5-final-code-run*.json).
ATTEMPTS = 5
PASSES = 3  # timed passes per run, after the warm-up: each side's best of ATTEMPTS x PASSES

# Both steps time passes after the first over the same file in one process (steady state): an
# ingest worker is long-lived, and neither side should pay first-touch costs (imports, the
# allocator's first growth, the page cache).
PANDAS_STEP = """
import json, resource, sys, time
import pandas as pd
pd.read_csv(sys.argv[1])
passes = []
for _ in range(int(sys.argv[2])):
    cpu, start = time.process_time(), time.perf_counter()
    frame = pd.read_csv(sys.argv[1])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    passes.append({"seconds": elapsed, "cpu_seconds": cpu, "rows": len(frame)})
    del frame
best = min(passes, key=lambda p: p["seconds"])
print(json.dumps({**best, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

INGEST_STEP = """
import json, resource, sys, time
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from dataspace.accounts.models import Role
from dataspace.accounts.services import user_create
from dataspace.catalog import services
from dataspace.catalog.uploads import UPLOAD_PIECE_BYTES, seal_chunks
provider = user_create(username="bench", password="bench-password-1", roles=[Role.PROVIDER])
baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def chunks(path):
    # In the pieces an HTTP upload's body is read in.
    with open(path, "rb") as handle:
        while block := handle.read(UPLOAD_PIECE_BYTES):
            yield block

def ingest(upload):
    ingest = services.ingest_start(provider=provider, upload=upload, metadata=services.DatasetMetadata(title="bench"))
    return services.ingest_run(ingest_id=ingest.id)

warm_up = ingest(seal_chunks(chunks(sys.argv[1]), name="warm-up.csv"))
assert warm_up is not None
# The measured upload's sealed bytes go into pages the warm-up's blob held, as on a host that has
# been up a while. On a fresh VM the first use of memory the guest never touched is slow whatever
# the code: sealing this upload into new page cache took 0.15 s instead of 0.045 s.
from dataspace.vault import services as vault
vault.blob_delete(warm_up.blob_name)
passes = []
for _ in range(int(sys.argv[2])):
    cpu_start, start = time.process_time(), time.perf_counter()
    upload = seal_chunks(chunks(sys.argv[1]), name="bench.csv")
    cpu_sealed, sealed = time.process_time(), time.perf_counter()
    dataset = ingest(upload)
    cpu_done, done = time.process_time(), time.perf_counter()
    assert dataset is not None
    passes.append({
        "seconds": done - start, "seal_seconds": sealed - start, "validate_seconds": done - sealed,
        "seal_cpu_seconds": cpu_sealed - cpu_start, "validate_cpu_seconds": cpu_done - cpu_sealed,
        "rows": dataset.row_count,
    })
    vault.blob_delete(dataset.blob_name)
best = min(passes, key=lambda p: p["seconds"])
print(json.dumps({
    **best, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "baseline_mb": baseline_mb,
}))
"""


def write_csv(path: Path, rows: int) -> None:
    from dataspace.demo.synthetic import registry_csv_chunks

    with path.open("wb") as handle:
        for chunk in registry_csv_chunks(rows, seed=1):
            handle.write(chunk)


def run_step(code: str, csv_path: Path, var_dir: Path, passes: int = PASSES) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(DJANGO_SETTINGS_MODULE="dataspace.settings", REDLAKE_VAR_DIR=str(var_dir))
    output = subprocess.run(
        [sys.executable, "-c", code, str(csv_path), str(passes)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dataspace.settings")
    import django

    django.setup()
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="redlake-bench-"))
    try:
        csv_1m, csv_3m = work / "registry-1m.csv", work / "registry-3m.csv"
        write_csv(csv_1m, 1_000_000)
        write_csv(csv_3m, 3_000_000)
        size_mb = csv_1m.stat().st_size / 1e6
        # Alternate the two so drift on a noisy machine hits both; keep each one's best.
        pandas_runs, ingest_runs = [], []
        for attempt in range(ATTEMPTS):
            pandas_runs.append(run_step(PANDAS_STEP, csv_1m, work / f"var-p{attempt}"))
            ingest_runs.append(run_step(INGEST_STEP, csv_1m, work / f"var-i{attempt}"))
        pandas = min(pandas_runs, key=lambda r: r["seconds"])
        ingest = min(ingest_runs, key=lambda r: r["seconds"])
        big = run_step(INGEST_STEP, csv_3m, work / "var-3m", passes=1)
        pandas_big = run_step(PANDAS_STEP, csv_3m, work / "var-p3m", passes=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]

    metrics = [
        metric(
            "ingest time / pandas read time (1M rows x 10 cols)",
            ingest["seconds"] / pandas["seconds"],
            "ratio",
            target=2.0,
            better="lower",
            baseline=("pandas.read_csv seconds", pandas["seconds"]),
        ),
        metric(
            "ingest throughput (1M rows)",
            size_mb / ingest["seconds"],
            "MB/s",
            target=None,
            better="higher",
            baseline=("pandas.read_csv MB/s", size_mb / pandas["seconds"]),
        ),
        # pandas 3 reads on both cores too (CPU ~1.9x its wall time here): the ratio is of two
        # parallel reads, not of a parallel ingest against a single-threaded baseline.
        metric("pandas.read_csv CPU seconds", pandas["cpu_seconds"], "s", target=None, better="lower"),
        metric("ingest seconds: hash + seal", ingest["seal_seconds"], "s", target=None, better="lower"),
        metric(
            "ingest seconds: decrypt + validate + profile", ingest["validate_seconds"], "s", target=None, better="lower"
        ),
        # CPU seconds (all threads of the process) next to the wall seconds above: on a shared
        # machine the wall moves with the load, the CPU much less; CPU above wall means both cores.
        metric("ingest CPU seconds: hash + seal", ingest["seal_cpu_seconds"], "s", target=None, better="lower"),
        metric(
            "ingest CPU seconds: decrypt + validate + profile",
            ingest["validate_cpu_seconds"],
            "s",
            target=None,
            better="lower",
        ),
        metric(
            "ingest peak RSS (1M rows)",
            ingest["peak_mb"],
            "MB",
            target=500,
            better="lower",
            baseline=("pandas.read_csv peak RSS", pandas["peak_mb"]),
        ),
        metric(
            "ingest peak RSS (3M rows)",
            big["peak_mb"],
            "MB",
            target=500,
            better="lower",
            baseline=("pandas.read_csv peak RSS (3M rows)", pandas_big["peak_mb"]),
        ),
        metric("process RSS before ingest (Django loaded)", ingest["baseline_mb"], "MB", target=None, better="lower"),
    ]
    notes = (
        f"CSV {size_mb:.1f} MB for 1M rows; each side's best of {ATTEMPTS} alternating runs x {PASSES} passes; each "
        "step in its own process, timing the passes after its first (steady state). Peak RSS includes Django and pyarrow (see the RSS-before-ingest line). "
        f"Load average (1 min) {load_before:.1f} before, {load_after:.1f} after: the ratio moves with it "
        "(both read on both cores, but ingest does more besides: sealing, hashing, decrypting, profiling)."
    )
    print(write_result("ingest", metrics, notes))


if __name__ == "__main__":
    main()
