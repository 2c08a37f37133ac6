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

# Stop what this run started, and only that (by the process ids it got when starting them), however it
# ends: Ctrl-C, a terminal closed, `kill`, an error. Each is waited for, so a `make run` started right after
# never meets a Redis still shutting down (which would remove the new one's socket).
redis_pid=""
procs_pid=""
exited() {  # PID is gone, or has exited and waits to be reaped (a zombie, which `kill -0` still finds)
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [ "${stat%% *}" = Z ]
}
stop() {  # stop PID: SIGTERM, then wait up to 10 s for it to exit
  exited "$1" && return 0
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do exited "$1" && return 0; sleep 0.1; done
  echo "run: process $1 did not stop within 10 s" >&2
}
cleanup() {
  trap - INT TERM HUP
  if [ -n "$procs_pid" ]; then stop "$procs_pid"; fi
  if [ -n "$redis_pid" ]; then stop "$redis_pid"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [ -z "${CELERY_BROKER_URL:-}" ]; then
  # Embedded broker: a private Redis on a unix socket, so jobs run in a real worker process
  # without touching any Redis the machine may already run on port 6379.
  socket="$VAR_DIR/run/redis.sock"
  if [ -S "$socket" ] && redis-cli -s "$socket" ping >/dev/null 2>&1; then
    echo "run: a Redis already answers on $socket: is another \`make run\` using $VAR_DIR? Stop it first." >&2
    exit 1
  fi
  rm -f "$socket"
  # A child of this script (not daemonized): its id is known at once, and cleanup stops it.
  redis-server --port 0 --unixsocket "$socket" --unixsocketperm 700 --save "" --appendonly no \
    --dir "$VAR_DIR/run" --logfile "$VAR_DIR/log/redis.log" --daemonize no &
  redis_pid=$!
  for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.1; done
  [ -S "$socket" ] || { echo "run: Redis did not start, see $VAR_DIR/log/redis.log" >&2; exit 1; }
  # Throttling counters (per API key, failed sign-ins) shared by every web and tile process: database 1 of it.
  export CACHE_URL=${CACHE_URL:-unix://$socket?db=1}
fi

.venv/bin/python manage.py migrate --noinput -v 0
.venv/bin/python manage.py collectstatic --noinput -v 0
.venv/bin/python manage.py seed_demo

cat <<MSG

  Groundcount is starting at  http://${HOST}:${PORT}/
  API: http://${HOST}:${PORT}/api/v1/   API docs: http://${HOST}:${PORT}/api/docs/   Admin: http://${HOST}:${PORT}/admin/
  Map tiles: ${TILE_BASE_URL}/tiles/ (TileJSON per image: /api/v1/images/<id>/tilejson.json)
  Stop with Ctrl-C.

MSG
# In the background and waited for, so that a signal reaches the traps above at once (bash runs traps only
# between commands), and cleanup stops honcho, which stops the web, tile and worker processes. Honcho ignores
# SIGHUP (a closed terminal), which would kill it at once and orphan those processes: cleanup stops it.
(trap '' HUP; exec .venv/bin/honcho -f Procfile start) &
procs_pid=$!
wait "$procs_pid"
