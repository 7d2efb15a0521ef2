"""Fails unless every high or medium Slither finding is explained in contracts/SECURITY.md.

A finding is named ``<detector>: <Contract.function>`` (its first element), which survives edits
that only move line numbers; SECURITY.md explains it under a heading containing that name.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

SERIOUS = {"High", "Medium"}


def finding_name(result: dict[str, Any]) -> str:
    first = result["elements"][0] if result.get("elements") else {}
    parent = first.get("type_specific_fields", {}).get("parent", {})
    if first.get("type") == "function":
        where = f"{parent.get('name', '?')}.{first.get('name', '?')}"
    elif parent.get("type") == "function":
        contract = parent.get("type_specific_fields", {}).get("parent", {}).get("name", "?")
        where = f"{contract}.{parent.get('name', '?')}"
    else:
        where = str(first.get("name", "?"))
    return f"{result['check']}: {where}"


def main(report_path: str, explanations_path: str) -> int:
    report = json.loads(Path(report_path).read_text())
    if not report.get("success"):
        print(f"slither failed: {report.get('error')}")
        return 1
    results = report.get("results", {}).get("detectors", [])
    explained = Path(explanations_path).read_text()
    by_impact = Counter(result["impact"] for result in results)
    serious = sorted({finding_name(r) for r in results if r["impact"] in SERIOUS})
    missing = [name for name in serious if name not in explained]
    print(
        "slither: "
        + ", ".join(f"{by_impact[i]} {i.lower()}" for i in ("High", "Medium", "Low", "Informational", "Optimization"))
        + f"; {len(serious) - len(missing)} of {len(serious)} high/medium findings explained in {explanations_path}"
    )
    for name in missing:
        print(f"  unexplained: {name}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
