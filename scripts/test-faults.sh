#!/usr/bin/env bash
# The fault suite (tests/faults) on PRIVATE services: its own PostgreSQL cluster and its own
# redis-server, each on a free port with its state under var/faults, so the tests can restart
# them without disturbing anything else on the machine. Both always stop when this script ends.
#
# Each service runs under a small supervisor loop in this script rather than as a child of
# pytest: a test restarts a service by stopping it (optionally holding it down a while by
# creating a "hold" file) and the loop starts it again. The processes never belong to the test
# run, so its check for leftover children stays meaningful.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}"
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)"; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not found (apt-get install redis-server)"; exit 1; }

FAULTS="$PWD/var/faults"
rm -rf "$FAULTS"
mkdir -p "$FAULTS/pg" "$FAULTS/redis" "$FAULTS/run"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

PG_PORT="$(free_port)"
REDIS_PORT="$(free_port)"
PGDATA="$FAULTS/pg/data"
[ "$(id -u)" = 0 ] && chown postgres: "$FAULTS/pg"
as_postgres "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust --no-sync -E UTF8 >"$FAULTS/pg/initdb.log"
# fsync off: this cluster's data is thrown away after the run; a restart is a clean shutdown.
as_postgres tee -a "$PGDATA/postgresql.conf" >/dev/null <<CONF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$FAULTS/pg'
fsync = off
max_connections = 200
CONF

# supervise NAME COMMAND...: runs COMMAND again each time it exits, until $FAULTS/NAME/stop exists;
# while $FAULTS/NAME/hold exists it waits before starting again (a test holding the service down).
supervise() {
  local name="$1"; shift
  (
    while [ ! -e "$FAULTS/$name/stop" ]; do
      while [ -e "$FAULTS/$name/hold" ] && [ ! -e "$FAULTS/$name/stop" ]; do sleep 0.1; done
      [ -e "$FAULTS/$name/stop" ] && break
      "$@" >>"$FAULTS/$name/server.log" 2>&1 || true
      echo "$(date +%T.%N) $name exited" >>"$FAULTS/$name/restarts.log"
    done
  ) &
  echo $! >"$FAULTS/$name/supervisor.pid"
}

cleanup() {
  touch "$FAULTS/pg/stop" "$FAULTS/redis/stop"
  as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" stop -m immediate >/dev/null 2>&1 || true
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  for name in pg redis; do
    pid="$(cat "$FAULTS/$name/supervisor.pid" 2>/dev/null || true)"
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

supervise pg as_postgres "$PG_BIN/postgres" -D "$PGDATA"
supervise redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --pidfile "$FAULTS/redis/redis.pid" --dir "$FAULTS/redis"
for _ in $(seq 1 60); do port_open "$PG_PORT" && port_open "$REDIS_PORT" && break; sleep 0.5; done
port_open "$PG_PORT" || { echo "the private PostgreSQL did not start:"; cat "$FAULTS/pg/server.log"; exit 1; }
port_open "$REDIS_PORT" || { echo "the private redis-server did not start:"; cat "$FAULTS/redis/server.log"; exit 1; }
echo "== private PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT (state in var/faults)"

export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/redlake"
export CELERY_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0"
export REDLAKE_VAR_DIR="$FAULTS/run"
# What tests/faults needs to restart the services (tests/faults/services.py).
export REDLAKE_FAULTS_DIR="$FAULTS"
export REDLAKE_FAULTS_PGDATA="$PGDATA"
export REDLAKE_FAULTS_PG_PORT="$PG_PORT"
export REDLAKE_FAULTS_REDIS_PORT="$REDIS_PORT"
status=0
python -m pytest -p no:cacheprovider tests/faults "$@" || status=$?
exit "$status"
