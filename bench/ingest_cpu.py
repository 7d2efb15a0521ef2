"""CPU seconds of each part of an ingest, one part at a time, next to pandas reading the same CSV.

bench/ingest.py measures the wall time of the whole path, which moves with whatever else the
machine runs; this splits the CPU (what a quiet machine's wall time is bounded by: the sum over
both cores) into its parts, each the fastest of N runs on one thread, so a change to one part
shows as that part's number. Embedded default (SQLite, a temporary var dir).

    python bench/ingest_cpu.py [--rows 1000000] [--runs 7]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _fastest(runs: int, part: Callable[[], Any], clock: Callable[[], float] = time.thread_time) -> float:
    best = float("inf")
    for _ in range(runs):
        start = clock()
        part()
        best = min(best, clock() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for name in ("DATABASE_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dataspace.settings")
    os.environ["REDLAKE_VAR_DIR"] = tempfile.mkdtemp(prefix="redlake-ingest-cpu-")
    import django

    django.setup()
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    from django.core.management import call_command

    from dataspace.accounts.models import Role
    from dataspace.accounts.services import user_create
    from dataspace.catalog import profiling, services
    from dataspace.catalog.uploads import seal_chunks
    from dataspace.demo.synthetic import registry_csv_chunks
    from dataspace.vault import services as vault

    call_command("migrate", verbosity=0)
    provider = user_create(username="bench", password="bench-password-1", roles=[Role.PROVIDER])
    content = b"".join(registry_csv_chunks(args.rows, seed=1))

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(content), 1 << 20):
            yield content[start : start + (1 << 20)]

    def seal_only() -> None:
        key = vault.data_key_generate().plaintext
        sealer = vault.BlobSealer(key=key, blob_name="bench/seal-only.sealed")
        for chunk in chunks():
            sealer.write(chunk)
        sealer.finish()
        vault.blob_delete(sealer.blob_name)

    upload = seal_chunks(chunks(), name="bench.csv")

    def opened() -> Any:
        return io.BufferedReader(vault.blob_open(blob_name=upload.blob_name, key=upload.data_key.plaintext), 1 << 20)

    def decrypt_and_cut() -> None:
        with opened() as stream:
            for _segment in profiling._segments(stream, profiling.CSV_SEGMENT_BYTES):
                pass

    def profile() -> None:
        with opened() as stream:
            profiling.profile_csv(stream, size=len(content))

    segments = [bytes(s.view) for s in profiling._segments(io.BytesIO(content), profiling.CSV_SEGMENT_BYTES)]
    first = pa_csv.read_csv(pa.py_buffer(segments[0]), read_options=pa_csv.ReadOptions(use_threads=False))
    names, types = first.schema.names, {f.name: f.type for f in first.schema}
    options = pa_csv.ParseOptions(invalid_row_handler=profiling._RaggedSeen())
    buffers = [bytearray(s) for s in segments[1:]]
    later = [profiling._Segment(memoryview(buffer), False, buffer) for buffer in buffers]
    tables = [profiling._read_segment(s, names, types, options, use_threads=False) for s in later]
    candidates = [
        profiling._count_column(c, with_values=True).values is not None for c in pa.concat_tables(tables).columns
    ]

    def parse() -> None:
        for s in later:
            profiling._read_segment(s, names, types, options, use_threads=False)

    def count() -> None:
        for table in tables:
            for column, candidate in zip(table.columns, candidates, strict=True):
                profiling._count_column(column, with_values=candidate)

    def ingest() -> None:
        sealed = seal_chunks(chunks(), name="bench.csv")
        started = services.ingest_start(provider=provider, upload=sealed, metadata=services.DatasetMetadata(title="b"))
        assert services.ingest_run(ingest_id=started.id) is not None

    def ingest_run_only() -> None:
        sealed = seal_chunks(chunks(), name="bench.csv")
        started = services.ingest_start(provider=provider, upload=sealed, metadata=services.DatasetMetadata(title="b"))
        ingest_run_cpu.append(_fastest(1, lambda: services.ingest_run(ingest_id=started.id), time.process_time))

    ingest_run_cpu: list[float] = []
    parts = [
        ("SHA-256 of the content", _fastest(args.runs, lambda: hashlib.sha256(content).digest())),
        ("AES-GCM seal to the blob store (no hash)", _fastest(args.runs, seal_only)),
        (
            "hash + seal, seal_chunks (process CPU, both threads)",
            _fastest(args.runs, lambda: seal_chunks(chunks(), name="b.csv"), time.process_time),
        ),
        ("decrypt + authenticate + cut into segments", _fastest(args.runs, decrypt_and_cut)),
        ("pyarrow parse of the segments after the first (one thread)", _fastest(args.runs, parse)),
        ("counting: nulls, distinct values of candidates", _fastest(args.runs, count)),
        (
            "profile_csv over the sealed blob (process CPU, all threads)",
            _fastest(args.runs, profile, time.process_time),
        ),
    ]
    for _ in range(args.runs):
        ingest_run_only()
    parts += [
        ("ingest_run: decrypt + validate + profile + dataset (process CPU)", min(ingest_run_cpu)),
        ("seal_chunks + ingest_start + ingest_run (process CPU)", _fastest(args.runs, ingest, time.process_time)),
        (
            "pandas.read_csv of the same bytes (process CPU)",
            _fastest(args.runs, lambda: pd.read_csv(io.BytesIO(content)), time.process_time),
        ),
    ]
    print(f"{len(content) / 1e6:.1f} MB, {args.rows} rows; fastest of {args.runs} runs; load {os.getloadavg()[0]:.1f}")
    for label, seconds in parts:
        print(f"{seconds:8.3f} s CPU  {label}")


if __name__ == "__main__":
    main()
