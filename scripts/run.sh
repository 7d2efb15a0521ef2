#!/usr/bin/env bash
# Starts the whole platform on the embedded defaults (SQLite, the SQLAlchemy broker, local blobs
# and keys under var/) with demo data, under one process manager. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export DEBUG="${DEBUG:-1}"   # the embedded platform is a development server: say so
export REDLAKE_PORT="${REDLAKE_PORT:-8000}"
python manage.py migrate --no-input -v 0
python manage.py collectstatic --no-input -v 0
echo "Demo accounts:"
python manage.py demo seed
cat <<MSG

Redlake is starting at http://127.0.0.1:${REDLAKE_PORT}/
  portal:      http://127.0.0.1:${REDLAKE_PORT}/            (log in as provider / redlake-provider)
  REST API:    http://127.0.0.1:${REDLAKE_PORT}/api/docs/
  DCAT:        http://127.0.0.1:${REDLAKE_PORT}/catalog.jsonld
Ctrl-C stops everything.

MSG
exec honcho start -f Procfile
