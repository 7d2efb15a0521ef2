#!/usr/bin/env bash
# The real forge binary (the npm wrapper loses exit codes), run from contracts/ so the compiler
# shim resolves.
set -euo pipefail
cd "$(dirname "$0")"
exec ../node_modules/@foundry-rs/forge-linux-amd64/bin/forge "$@"
