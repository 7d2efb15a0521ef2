"""Prints one table of every recorded benchmark result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS


def verdict(entry: dict[str, object]) -> str:
    target, value = entry.get("target"), entry["value"]
    if target is None:
        return ""
    ok = value <= target if entry["better"] == "lower" else value >= target  # type: ignore[operator]
    return "meets" if ok else "MISSES"


def main() -> None:
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        body = json.loads(path.read_text())
        for entry in body["metrics"]:
            base = entry.get("baseline")
            rows.append(
                (
                    body["benchmark"],
                    entry["name"],
                    f"{entry['value']:g} {entry['unit']}",
                    ""
                    if entry.get("target") is None
                    else f"{'<=' if entry['better'] == 'lower' else '>='} {entry['target']:g}",
                    verdict(entry),
                    f"{base['name']}: {base['value']:g}" if base else "",
                )
            )
    headers = ("benchmark", "metric", "value", "target", "", "baseline")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
