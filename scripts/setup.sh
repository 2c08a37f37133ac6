#!/usr/bin/env bash
# Install everything the platform needs, idempotently: Debian packages when missing, a virtualenv in
# .venv with the pinned Python dependencies, and the built front end once it exists.
# Fast when nothing changed: each step is skipped when its inputs are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  redis-server                # Celery broker (embedded run and tests)
  postgresql                  # production database; tests run against it
  libgdal32 libgeos-c1v5      # GeoDjango
  libsqlite3-mod-spatialite   # embedded SpatiaLite database
  chromium                    # browser tests of the web app (tests/browser, Playwright drives it)
)
pg_major=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)
APT_PACKAGES+=("postgresql-${pg_major:-15}-postgis-3")

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing system packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    echo "setup: need root or sudo to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  # Added after the first install: postgis may come in for a major version chosen before postgresql existed.
  pg_major=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  dpkg-query -W -f='${Status}' "postgresql-${pg_major}-postgis-3" 2>/dev/null | grep -q "install ok installed" ||
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "postgresql-${pg_major}-postgis-3" >/dev/null
fi

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ] && ! "$PYTHON" -c "import ensurepip" 2>/dev/null; then
  echo "setup: installing python3-venv"
  $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade "pip==25.3"
  .venv/bin/python -m pip install -q -c requirements.lock -e ".[dev]"
  echo "$want" > "$stamp"
fi

if [ -f frontend/package.json ]; then
  # npm ci only when the lock file changed; the build itself is quick and always redone.
  if [ ! -f frontend/node_modules/.package-lock.json ] || [ frontend/package-lock.json -nt frontend/node_modules/.package-lock.json ]; then
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
  fi
  (cd frontend && npm run --silent build)
fi
echo "setup: ready"
