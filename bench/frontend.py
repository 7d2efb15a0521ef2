"""The portal's weight: JavaScript a browser downloads for the first page (the entry script and
what index.html preloads), gzip-compressed as whitenoise serves it, next to the whole build."""

from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DIST = ROOT / "frontend" / "dist"


def gzipped(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9))


def main() -> None:
    from bench.common import metric, write_result

    index = (DIST / "index.html").read_text()
    first = [
        DIST / src.removeprefix("/static/app/") for src in re.findall(r'(?:src|href)="(/static/app/[^"]+\.js)"', index)
    ]
    every = sorted((DIST / "assets").glob("*.js"))
    first_kb = sum(gzipped(p) for p in first) / 1024
    total_kb = sum(gzipped(p) for p in every) / 1024
    explorer_kb = (
        sum(gzipped(p) for p in every if re.match(r"(space|Explorer|TxPage|AuditJob|AgreementTimeline)-", p.name))
        / 1024
    )
    metrics = [
        metric(
            "portal first load, JavaScript gzip",
            first_kb,
            "KiB",
            target=300,
            better="lower",
            baseline=("the whole build, every chunk, gzip", total_kb),
        ),
        metric(
            "explorer chunks (viem, ABIs, pages), loaded on demand, gzip",
            explorer_kb,
            "KiB",
            target=None,
            better="lower",
        ),
    ]
    print(write_result("frontend", metrics, f"{len(first)} scripts on first load; build in frontend/dist"))


if __name__ == "__main__":
    main()
