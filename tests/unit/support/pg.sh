#!/usr/bin/env bash
# A PostgreSQL server of the tests' own, from Debian's postgresql package:
# initdb in a fresh temporary folder, pg_ctl start on a free port of
# 127.0.0.1 with its unix socket in that folder, a database `flowrun_test`,
# and at the end pg_ctl stop -m immediate and the folder removed, also when
# the test fails or is killed. As root (CI) initdb and the server run as the
# `postgres` system user the package creates, which owns the folder; as a
# normal user they run as that user. Where the server's binaries are not
# installed, it says SKIP and exits 77 (CTest's SKIP_RETURN_CODE).
#
# Two ways to use it:
#   source tests/unit/support/pg.sh; pg_start
#       for e2e scripts: sets PG_DIR, PG_PORT, PG_SOCKET (the socket's
#       folder), PG_URL (postgresql://postgres@127.0.0.1:PORT/flowrun_test)
#       and PG_PASSWORD_URL (the same as the role `pwuser`, whose password is
#       PG_PASSWORD, checked by scram over TCP); installs an EXIT trap that
#       calls pg_stop (a script with its own EXIT trap calls pg_stop in it).
#   bash tests/unit/support/pg.sh serve
#       for C tests (tests/unit/support/pg_fixture.h): starts the server,
#       prints the variables above as NAME=value lines and then `ready`, and
#       stops it when its standard input ends: the test holds the pipe, so
#       the server goes with it however the test ends (kill -9 included).
#   bash tests/unit/support/pg.sh restart DIR
#       pg_ctl restart -m fast of the server in DIR (a test's fault).

PG_PASSWORD='pw-s3cret-Hx7q'

pg__skip() {
  echo "SKIP: $* (bash tests/deps.sh installs postgresql)" >&2
  exit 77
}

# The folder of initdb and pg_ctl: pg_config's, else the newest of Debian's.
pg__bindir() {
  local d
  d=$(pg_config --bindir 2>/dev/null || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
    echo "$d"
    return 0
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

# Runs "$@" as the server's user: postgres when we are root, else us.
pg__as() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg__free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts the server; sets PG_BIN, PG_DIR, PG_PORT, PG_SOCKET, PG_URL,
# PG_PASSWORD_URL. Messages go to standard error.
pg__start() {
  PG_BIN=$(pg__bindir) || pg__skip "PostgreSQL's server (initdb, pg_ctl) is not installed"
  if [ "$(id -u)" -eq 0 ] && ! id -u postgres >/dev/null 2>&1; then
    pg__skip "running as root and there is no postgres user to run the server as"
  fi
  PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/flowrun-pg.XXXXXX") || return 1
  chmod 755 "$PG_DIR"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$PG_DIR"
  PG_SOCKET=$PG_DIR
  pg__as "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    --no-sync >"$PG_DIR/initdb.log" 2>&1 ||
    { cat "$PG_DIR/initdb.log" >&2; echo "pg.sh: initdb failed" >&2; return 1; }
  # The role pwuser signs in with a password over TCP; everyone else is trusted.
  pg__as sh -c "cat > '$PG_DIR/data/pg_hba.conf'" <<EOF
local all all trust
host all pwuser 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
EOF
  local try
  for try in 1 2 3 4 5; do
    PG_PORT=$(pg__free_port)
    pg__as sh -c "cat >> '$PG_DIR/data/postgresql.conf'" <<EOF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_SOCKET'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 30
EOF
    if pg__as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
      >/dev/null 2>&1; then
      break
    fi
    PG_PORT=
  done
  [ -n "$PG_PORT" ] || { cat "$PG_DIR/server.log" >&2; echo "pg.sh: pg_ctl start failed" >&2; return 1; }
  "$PG_BIN/psql" -X -q -h "$PG_SOCKET" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE DATABASE flowrun_test" \
    -c "CREATE ROLE pwuser LOGIN PASSWORD '$PG_PASSWORD'" \
    -c "GRANT ALL ON DATABASE flowrun_test TO pwuser" >&2 ||
    { echo "pg.sh: creating the database failed" >&2; return 1; }
  "$PG_BIN/psql" -X -q -h "$PG_SOCKET" -p "$PG_PORT" -U postgres -d flowrun_test \
    -v ON_ERROR_STOP=1 -c "GRANT ALL ON SCHEMA public TO pwuser" >&2 || return 1
  PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/flowrun_test"
  PG_PASSWORD_URL="postgresql://pwuser@127.0.0.1:$PG_PORT/flowrun_test"
  export PG_DIR PG_PORT PG_SOCKET PG_URL PG_PASSWORD_URL PG_PASSWORD
}

# Stops the server pg_start started and removes its folder. Safe to call twice.
pg_stop() {
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR" ]; then
    [ ! -f "$PG_DIR/data/postmaster.pid" ] ||
      pg__as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
  PG_DIR=
}

pg_start() {
  trap pg_stop EXIT
  pg__start || { pg_stop; return 1; }
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  case "${1:-}" in
    serve)
      trap pg_stop EXIT
      trap 'exit 1' INT TERM HUP PIPE
      pg__start || exit 1
      for v in PG_DIR PG_PORT PG_SOCKET PG_URL PG_PASSWORD_URL PG_PASSWORD; do
        echo "$v=${!v}"
      done
      echo ready
      cat >/dev/null # until the test's end of the pipe closes
      ;;
    restart)
      [ -d "${2:-}/data" ] || { echo "usage: pg.sh restart DIR" >&2; exit 2; }
      PG_BIN=$(pg__bindir) || exit 1
      pg__as "$PG_BIN/pg_ctl" -D "$2/data" -l "$2/server.log" -m fast -w -t 60 restart >/dev/null
      ;;
    *)
      echo "usage: pg.sh serve | pg.sh restart DIR | source pg.sh; pg_start" >&2
      exit 2
      ;;
  esac
fi
