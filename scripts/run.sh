#!/usr/bin/env bash
# Start the whole platform in the foreground on its embedded defaults (or on what the environment
# configures): a Redis broker on a unix socket, the web server, and a Celery worker with its beat.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

export PORT=${PORT:-8000}
export HOST=${HOST:-127.0.0.1}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://127.0.0.1:${PORT}}
# Map tiles are rendered by their own process (Procfile `tiles`), so they never hold up the API.
export TILE_PORT=${TILE_PORT:-$((PORT + 1))}
export TILE_BASE_URL=${TILE_BASE_URL:-http://127.0.0.1:${TILE_PORT}}
VAR_DIR=${VAR_DIR:-$PWD/var}
export VAR_DIR
mkdir -p "$VAR_DIR/run" "$VAR_DIR/log"

# Off loopback the platform needs credentials nobody can guess (picterra/security.py: startup_problem).
problem=$(.venv/bin/python -c 'import os; from picterra.security import startup_problem
print(startup_problem(os.environ["HOST"], os.environ.get("SECRET_KEY", ""), os.environ.get("DEMO_PASSWORD", "")) or "")')
if [ -n "$problem" ]; then echo "run: $problem" >&2; exit 1; fi

redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then kill -TERM "$redis_pid"; fi
}
trap cleanup EXIT

if [ -z "${CELERY_BROKER_URL:-}" ]; then
  # Embedded broker: a private Redis on a unix socket, so jobs run in a real worker process
  # without touching any Redis the machine may already run on port 6379.
  socket="$VAR_DIR/run/redis.sock"
  rm -f "$socket"
  redis-server --port 0 --unixsocket "$socket" --unixsocketperm 700 --save "" --appendonly no \
    --dir "$VAR_DIR/run" --pidfile "$VAR_DIR/run/redis.pid" --logfile "$VAR_DIR/log/redis.log" --daemonize yes
  for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.1; done
  [ -S "$socket" ] || { echo "run: Redis did not start, see $VAR_DIR/log/redis.log" >&2; exit 1; }
  redis_pid=$(cat "$VAR_DIR/run/redis.pid")
  # Throttling counters (per API key, failed sign-ins) shared by every web and tile process: database 1 of it.
  export CACHE_URL=${CACHE_URL:-unix://$socket?db=1}
fi

.venv/bin/python manage.py migrate --noinput -v 0
.venv/bin/python manage.py collectstatic --noinput -v 0
.venv/bin/python manage.py seed_demo

cat <<MSG

  Picterra platform is starting at  http://${HOST}:${PORT}/
  API: http://${HOST}:${PORT}/api/v1/   API docs: http://${HOST}:${PORT}/api/docs/   Admin: http://${HOST}:${PORT}/admin/
  Map tiles: ${TILE_BASE_URL}/tiles/ (TileJSON per image: /api/v1/images/<id>/tilejson.json)
  Stop with Ctrl-C.

MSG
.venv/bin/honcho -f Procfile start
