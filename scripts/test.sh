#!/usr/bin/env bash
# Run the whole test suite against real PostgreSQL/PostGIS and Redis.
# Uses the servers on 127.0.0.1:5432 and :6379 when they answer; otherwise starts private ones in a
# temporary directory on spare ports and stops them afterwards (TEST_PRIVATE_SERVICES=1 forces that).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d /tmp/picterra-test.XXXXXX)
pg_data="" redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ]; then kill -TERM "$redis_pid" 2>/dev/null || true; fi
  if [ -n "$pg_data" ]; then runuser_pg "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
runuser_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ -z "${TEST_DATABASE_URL:-}" ]; then
  if [ -z "${TEST_PRIVATE_SERVICES:-}" ] && pg_isready -q -h 127.0.0.1 -p 5432 && psql -h 127.0.0.1 -U postgres -tAc "select 1" >/dev/null 2>&1; then
    TEST_DATABASE_URL="postgis://postgres@127.0.0.1:5432/picterra"
  else
    pg_bin=/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -n | tail -n 1)/bin
    port=$(free_port)
    pg_data="$tmp/pg"
    mkdir -p "$pg_data"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$tmp" "$pg_data"
    runuser_pg "$pg_bin/initdb" -D "$pg_data" -A trust -U postgres --no-sync >/dev/null
    runuser_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$tmp/pg.log" -w start \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$pg_data -c fsync=off" >/dev/null
    echo "test: started a private PostgreSQL on 127.0.0.1:$port"
    TEST_DATABASE_URL="postgis://postgres@127.0.0.1:$port/picterra"
  fi
fi
if [ -z "${TEST_REDIS_URL:-}" ]; then
  if [ -z "${TEST_PRIVATE_SERVICES:-}" ] && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    TEST_REDIS_URL="redis://127.0.0.1:6379/5"
  else
    port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$tmp" \
      --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --daemonize yes
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis_pid=$(cat "$tmp/redis.pid")
    echo "test: started a private Redis on 127.0.0.1:$port"
    TEST_REDIS_URL="redis://127.0.0.1:$port/5"
  fi
fi

# A database and broker key prefix of this run's own, so concurrent runs on one machine never collide.
run_id="$(date +%s)_$$"
export DATABASE_URL="${TEST_DATABASE_URL%/*}/picterra_${run_id}" CELERY_BROKER_URL=$TEST_REDIS_URL
export CELERY_BROKER_KEY_PREFIX="picterra-test-${run_id}:"
export VAR_DIR="$tmp/var" BLOBSTORE_URL="$tmp/var/blobs"
echo "test: database $DATABASE_URL, broker $CELERY_BROKER_URL"

.venv/bin/ruff check .
if [ -f frontend/package.json ]; then (cd frontend && npm test --silent); fi
.venv/bin/python -m pytest "$@"
