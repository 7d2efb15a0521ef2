#!/usr/bin/env bash
# Starts the whole platform on the embedded defaults (SQLite, the SQLAlchemy broker, local blobs
# and keys under var/, an anvil chain whose state persists in var/) with demo data, under one
# process manager. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
# ISSUE-14: gunicorn with DEBUG off (whitenoise serves the static files); DEBUG=1 make run for
# Django's debug pages. Plain HTTP on loopback, so the session cookies are not Secure-only.
export DEBUG="${DEBUG:-0}"
export SESSION_COOKIE_SECURE="${SESSION_COOKIE_SECURE:-0}" CSRF_COOKIE_SECURE="${CSRF_COOKIE_SECURE:-0}"
# ISSUE-14: REDLAKE_VAR_DIR moves all state (the benchmark runs this script in a scratch dir).
export REDLAKE_VAR_DIR="${REDLAKE_VAR_DIR:-$PWD/var}"
VAR="$REDLAKE_VAR_DIR"
export REDLAKE_PORT="${REDLAKE_PORT:-8000}"
export CHAIN_PORT="${CHAIN_PORT:-8545}"
export CHAIN_RPC_URL="${CHAIN_RPC_URL:-http://127.0.0.1:${CHAIN_PORT}}"
mkdir -p "$VAR"
# ISSUE-12: a SoftHSM2 token under var/softhsm; the keyrings stay file keyrings under var/keys
# unless REDLAKE_KEYRING_<NAME>=pkcs11:token=redlake;label=redlake-<name> selects it (README, Keys).
if ! command -v softhsm2-util >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends softhsm2 >/dev/null 2>&1 || true
fi
eval "$(bash scripts/softhsm.sh "$VAR")"
if env | grep -q '^REDLAKE_KEYRING_[A-Z]*=pkcs11:'; then python manage.py vault init-keyrings; fi

# anvil answers at once; its chain survives restarts through the state file (written on exit).
node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil --host 127.0.0.1 --port "$CHAIN_PORT" --chain-id 31337 \
  --state "$VAR/anvil-state.json" --silent &
ANVIL_PID=$!
trap 'kill -TERM "$ANVIL_PID" 2>/dev/null; wait "$ANVIL_PID" 2>/dev/null' EXIT
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$CHAIN_PORT") 2>/dev/null && break; sleep 0.1; done

python manage.py migrate --no-input -v 0
python manage.py collectstatic --no-input -v 0
python manage.py chain deploy
echo "Demo accounts:"
python manage.py demo seed
cat <<MSG

Redlake is starting at http://127.0.0.1:${REDLAKE_PORT}/
  portal:      http://127.0.0.1:${REDLAKE_PORT}/        (the app; log in as provider / redlake-provider)
  explorer:    http://127.0.0.1:${REDLAKE_PORT}/#/explorer  (log in as auditor / redlake-auditor)
  REST API:    http://127.0.0.1:${REDLAKE_PORT}/api/docs/
  DCAT:        http://127.0.0.1:${REDLAKE_PORT}/catalog.jsonld
  chain:       ${CHAIN_RPC_URL} (anvil, chain id 31337; python manage.py chain status)
Ctrl-C stops everything.

MSG
honcho start -f Procfile
