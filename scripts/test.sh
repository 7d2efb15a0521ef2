#!/usr/bin/env bash
# Every check: lint, types, the contracts, the compose file, and pytest. Where PostgreSQL and
# Redis run (or can be started) the suite runs on them, then its smoke subset on the embedded
# defaults; on a machine without them the whole suite runs on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_postgres() {
  port_open 5432 && return 0
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do port_open 5432 && return 0; sleep 0.5; done
  fi
  return 1
}

ensure_redis() {
  port_open 6379 && return 0
  if command -v redis-server >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do port_open 6379 && return 0; sleep 0.5; done
  fi
  return 1
}

echo "== ruff"
ruff check .
ruff format --check .

# The slower static checks side by side (about 1 min instead of 3 one after another): each writes
# its own log, printed in order once all have finished, so a failure reads as it would alone.
# forge and Slither build into their own out/ and cache/ directories (contracts/foundry.toml).
CHECKS="var/test/checks"
rm -rf "$CHECKS"
mkdir -p "$CHECKS"
check_mypy() { mypy; }
check_frontend() {
  # The portal's types are checked against the OpenAPI document (frontend/src/apiContract.ts); the
  # checked-in copy of that document's types must be the current one.
  env -u DATABASE_URL python manage.py spectacular --format openapi-json --file var/openapi.json
  (cd frontend && npx openapi-typescript ../var/openapi.json -o ../var/openapi.d.ts >/dev/null &&
    diff -q src/openapi.d.ts ../var/openapi.d.ts >/dev/null ||
    { echo "frontend/src/openapi.d.ts is stale: cd frontend && npm run openapi (after manage.py spectacular --format openapi-json --file var/openapi.json)"; exit 1; })
  (cd frontend && npm run --silent typecheck && npx vitest run --reporter=dot)
}
check_forge() { bash contracts/forge.sh test; }
check_slither() { bash scripts/slither.sh; }
declare -A CHECK_TITLES=(
  [mypy]="mypy"
  [frontend]="frontend: the API contract, types and vitest (unit tests of the portal's logic)"
  [forge]="forge test (contracts: unit, fuzz, invariant)"
  [slither]="slither (contracts/SECURITY.md explains every high or medium finding)"
)
CHECK_ORDER=(mypy frontend forge slither)
declare -A CHECK_PIDS=()
for name in "${CHECK_ORDER[@]}"; do
  ( set -euo pipefail; "check_$name" ) >"$CHECKS/$name.log" 2>&1 &
  CHECK_PIDS[$name]=$!
done
failed_checks=()
for name in "${CHECK_ORDER[@]}"; do
  status=0
  wait "${CHECK_PIDS[$name]}" || status=$?
  echo "== ${CHECK_TITLES[$name]}"
  cat "$CHECKS/$name.log"
  [ "$status" = 0 ] || failed_checks+=("$name")
done
[ "${#failed_checks[@]}" = 0 ] || { echo "failed: ${failed_checks[*]}"; exit 1; }

# System tools some checks use: Debian's docker-compose (validates the compose file offline) and
# Chromium (the portal's browser tests). Installed where we may (root with apt, as in CI);
# elsewhere those checks say they were skipped.
apt_ensure() {
  command -v "$1" >/dev/null 2>&1 && return 0
  apt_install "$2"
}
apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 0
  echo "installing $1 (apt)"
  # Without --no-install-recommends, docker-compose pulls the whole Docker engine.
  apt-get install -y -qq --no-install-recommends "$1" >/dev/null 2>&1 ||
    (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "$1" >/dev/null 2>&1) || true
}
apt_ensure docker-compose docker-compose
apt_ensure chromium chromium
# The portal's Chinese screenshots: without a CJK font Chromium draws every character as a box.
fc-list :lang=zh 2>/dev/null | grep -q . || apt_install fonts-wqy-microhei
apt_ensure softhsm2-util softhsm2  # ISSUE-12: the PKCS#11 keyrings' tests run against SoftHSM2
apt_ensure bwrap bubblewrap  # ISSUE-13: the sandbox TEE backend's confinement

echo "== docker-compose.yml"
if command -v docker-compose >/dev/null 2>&1; then
  # The secrets the file requires, with throwaway values: this checks structure, not secrets.
  # ISSUE-12 custody: one database password per role, and the operator's public address.
  env $(python3 tests/support/compose_env.py) docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml is valid"
else
  echo "docker-compose not installed: compose file not validated (apt-get install docker-compose)"
fi

mkdir -p var/test
export REDLAKE_VAR_DIR="$PWD/var/test"
# pytest on both cores (pytest-xdist, a test file per worker): most of the suite waits on worker
# processes, anvil and the broker rather than computing. tests.support.parallel gives each pytest
# worker its own var directory and Redis database; `python -m` puts the project on sys.path
# before that plugin is imported.
PARALLEL=(-p tests.support.parallel -n "${TEST_WORKERS:-2}" --dist loadfile)
# ISSUE-12: a SoftHSM2 token under var/test/softhsm for the PKCS#11 keyring tests.
eval "$(bash scripts/softhsm.sh var/test)"
if ensure_postgres && ensure_redis; then
  # ISSUE-14: the job tests again with RabbitMQ as the broker, where one listens. It starts beside
  # the PostgreSQL pass (its own database and var directory; mostly waiting on its Celery worker
  # and anvil), and its output is printed after that pass's.
  rabbit_pid=""
  if port_open 5672; then
    mkdir -p "$REDLAKE_VAR_DIR/amqp"
    echo "== pytest tests/integration/test_jobs.py with RabbitMQ as the broker (port 5672 is open), in the background"
    DATABASE_URL="${TEST_AMQP_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/redlake_amqp}" \
    CELERY_BROKER_URL="${TEST_AMQP_BROKER_URL:-amqp://guest:guest@127.0.0.1:5672//}" \
    REDLAKE_VAR_DIR="$REDLAKE_VAR_DIR/amqp" \
      python -m pytest -p no:cacheprovider tests/integration/test_jobs.py >var/test/rabbitmq-jobs.log 2>&1 &
    rabbit_pid=$!
    trap '[ -z "$rabbit_pid" ] || kill "$rabbit_pid" 2>/dev/null || true' EXIT
  else
    echo "RabbitMQ not listening on 5672: the job tests ran on Redis only"
  fi
  echo "== pytest on PostgreSQL and Redis"
  pg_status=0
  DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/redlake}" \
  CELERY_BROKER_URL="${TEST_BROKER_URL:-redis://127.0.0.1:6379/15}" \
    python -m pytest "${PARALLEL[@]}" "$@" || pg_status=$?
  if [ -n "$rabbit_pid" ]; then
    rabbit_status=0
    wait "$rabbit_pid" || rabbit_status=$?
    rabbit_pid=""
    echo "== (the RabbitMQ run of tests/integration/test_jobs.py)"
    cat var/test/rabbitmq-jobs.log
    [ "$rabbit_status" = 0 ] || exit "$rabbit_status"
  fi
  [ "$pg_status" = 0 ] || exit "$pg_status"
  echo "== pytest smoke subset on the embedded defaults (SQLite, SQLAlchemy broker)"
  env -u DATABASE_URL -u CELERY_BROKER_URL python -m pytest "${PARALLEL[@]}" -m smoke -p no:cacheprovider "$@"
else
  echo "PostgreSQL or Redis not reachable: running the whole suite on the embedded defaults (SQLite, SQLAlchemy broker)."
  env -u DATABASE_URL -u CELERY_BROKER_URL python -m pytest "${PARALLEL[@]}" "$@"
fi

# ISSUE-14: the fault suite on its own PostgreSQL cluster and redis-server (about 2.5 min), which
# it restarts: scripts/test-faults.sh starts and stops them.
if [ -x "$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)/initdb" ] && command -v redis-server >/dev/null 2>&1; then
  echo "== pytest tests/faults on a private PostgreSQL and Redis (make test-faults)"
  bash scripts/test-faults.sh
else
  echo "PostgreSQL server binaries or redis-server not installed: the fault suite (make test-faults) was skipped"
fi
