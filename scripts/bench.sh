#!/usr/bin/env bash
# Runs every benchmark (each writes bench/results/<name>.json), then prints one summary table.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
for bench in bench/frontend.py bench/explorer.py bench/ingest.py bench/gas.py bench/indexer.py bench/he.py bench/privacy.py bench/e2e.py bench/latency_default.py bench/settle_batch.py bench/keys.py bench/sandbox.py bench/tee_overhead.py bench/sdk.py bench/load.py; do
  echo "== $bench"
  python "$bench"
done
echo
python bench/summary.py
