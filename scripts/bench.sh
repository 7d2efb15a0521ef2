#!/usr/bin/env bash
# Runs every benchmark (each writes bench/results/<name>.json), then prints one summary table.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
BENCHES=(bench/frontend.py bench/explorer.py bench/ingest.py bench/gas.py bench/indexer.py bench/he.py bench/privacy.py bench/accounting.py bench/e2e.py bench/latency_default.py bench/settle_batch.py bench/keys.py bench/sandbox.py bench/tee_overhead.py bench/sdk.py bench/load.py)
# `make bench BENCH=bench/ingest.py` runs one (or several, space-separated).
[ -z "${BENCH:-}" ] || read -r -a BENCHES <<<"$BENCH"
# One that fails does not stop the others; the run fails at the end, naming it, and the table
# shows its previous result.
failed=()
for bench in "${BENCHES[@]}"; do
  echo "== $bench"
  python "$bench" || failed+=("$bench")
done
echo
python bench/summary.py
[ "${#failed[@]}" = 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
