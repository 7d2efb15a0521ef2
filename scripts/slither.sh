#!/usr/bin/env bash
# Slither over the contracts' forge build, in its own venv (.venv-tools: installing it beside web3
# would downgrade web3), then a check that every high or medium finding is explained in
# contracts/SECURITY.md. Slither runs `forge clean`, so it builds into the `slither` profile's own
# out-slither/ and leaves the project's out/ alone.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.venv-tools
SLITHER_VERSION=0.11.6
if [ ! -x "$TOOLS/bin/slither" ] || ! "$TOOLS/bin/slither" --version 2>/dev/null | grep -qx "$SLITHER_VERSION"; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check "slither-analyzer==$SLITHER_VERSION" 2>&1 | grep -v "^WARNING: Location" || true
fi
# solc must see OpenZeppelin under one name: the slither profile maps it through this symlink.
ln -sfn ../node_modules contracts/node_modules
# Slither calls `forge` by name; only the real binary keeps exit codes, and the venv's solc-select
# must stay off the PATH (it tries to download a compiler).
FORGE_DIR="$PWD/node_modules/@foundry-rs/forge-linux-amd64/bin"
mkdir -p var
report="$PWD/var/slither.json"
rm -f "$report"
(cd contracts && FOUNDRY_PROFILE=slither PATH="$FORGE_DIR:/usr/bin:/bin" \
  "../$TOOLS/bin/slither" . --compile-force-framework foundry --filter-paths "node_modules|test/" \
  --json "$report" >"../var/slither.log" 2>&1) || true  # slither exits non-zero whenever it finds anything
[ -s "$report" ] || { cat var/slither.log; echo "slither produced no report"; exit 1; }
.venv/bin/python scripts/slither_check.py "$report" contracts/SECURITY.md
