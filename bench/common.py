"""Shared benchmark plumbing: the results format and machine description."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    model, flags = "unknown CPU", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    if flags:
        # VMs sold under one model name differ in what the crypto and the parsers can use.
        model += " (AVX-512)" if "avx512f" in flags else " (no AVX-512)"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores, {model}, {memory:.0f} GiB, Python {platform.python_version()}"


def metric(
    name: str, value: float, unit: str, *, target: float | None, better: str, baseline: tuple[str, float] | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "value": round(value, 4), "unit": unit, "target": target, "better": better}
    if baseline is not None:
        entry["baseline"] = {"name": baseline[0], "value": round(baseline[1], 4)}
    return entry


def write_result(benchmark: str, metrics: list[dict[str, Any]], notes: str = "") -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{benchmark}.json"
    body = {
        "benchmark": benchmark,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "metrics": metrics,
    }
    if notes:
        body["notes"] = notes
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path
