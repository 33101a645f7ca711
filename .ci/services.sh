#!/usr/bin/env bash
# Services the test suite needs: Debian's PostgreSQL (a throw-away cluster on 127.0.0.1) and
# Debian's Chromium (Playwright browser tests). Owned by the web engineer [F]; .ci/run sources it.
#
#   source .ci/services.sh     # exports LATPLAN_TEST_POSTGRES_URL into the calling shell
#   bash .ci/services.sh       # same, and prints the export line
#
# Idempotent: packages are installed only when missing, an existing cluster is reused and
# (re)started. Works as root (apt-get, `runuser -u postgres`) on a fresh Debian machine; as a
# non-root user it needs the packages installed already and runs the cluster as that user.
# Settings: LATPLAN_PG_DIR (default /tmp/latplan-pg), LATPLAN_PG_PORT (default 55432).

latplan_services() {
  local pgdir="${LATPLAN_PG_DIR:-/tmp/latplan-pg}"
  local port="${LATPLAN_PG_PORT:-55432}"
  local db="latplan_test" user="latplan" pass="latplan-test-only"
  local need_apt=0 pgbin run_as=()

  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt=1
  [ -x /usr/bin/chromium ] || need_apt=1
  # dciodvfy (DICOM validator of the RT export tests), WeasyPrint's Pango/HarfBuzz (PDF reports); no test
  # uses poppler's pdftoppm (docs/report.md renders pages with it by hand), so CI does not install it
  command -v dciodvfy >/dev/null 2>&1 || need_apt=1
  ls /usr/lib/*/libpangoft2-1.0.so.0 >/dev/null 2>&1 || need_apt=1
  if [ "$need_apt" = 1 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "services.sh: postgresql/chromium are missing and I am not root; install them with apt-get" >&2
      return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || return 1
    apt-get install -y -q --no-install-recommends postgresql chromium fonts-dejavu-core dicom3tools \
      libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 || return 1
  fi
  pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"

  if [ "$(id -u)" = 0 ]; then
    run_as=(runuser -u postgres --)
    mkdir -p "$pgdir" && chown postgres:postgres "$pgdir" && chmod 700 "$pgdir"
  else
    mkdir -p "$pgdir" && chmod 700 "$pgdir"
  fi
  if [ ! -f "$pgdir/PG_VERSION" ]; then
    local pwfile
    pwfile="$(mktemp)" && echo "$pass" >"$pwfile" && chmod 644 "$pwfile"
    "${run_as[@]}" "$pgbin/initdb" -D "$pgdir" -U "$user" --pwfile="$pwfile" -A scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >/dev/null || { rm -f "$pwfile"; return 1; }
    rm -f "$pwfile"
  fi
  if ! "${run_as[@]}" "$pgbin/pg_ctl" -D "$pgdir" status >/dev/null 2>&1; then
    "${run_as[@]}" "$pgbin/pg_ctl" -D "$pgdir" -w -t 60 -l "$pgdir/server.log" \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $pgdir -c fsync=on" start >/dev/null || {
        tail -n 20 "$pgdir/server.log" >&2; return 1; }
  fi
  if ! PGPASSWORD="$pass" psql -h 127.0.0.1 -p "$port" -U "$user" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
    PGPASSWORD="$pass" psql -h 127.0.0.1 -p "$port" -U "$user" -d postgres -qc "CREATE DATABASE $db" || return 1
  fi
  export LATPLAN_TEST_POSTGRES_URL="postgresql+psycopg://$user:$pass@127.0.0.1:$port/$db"
  echo "export LATPLAN_TEST_POSTGRES_URL=$LATPLAN_TEST_POSTGRES_URL"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  latplan_services
else
  latplan_services || echo "services.sh: PostgreSQL/Chromium could not be set up (see above)" >&2
fi
