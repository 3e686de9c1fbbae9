# Shared helpers for the end-to-end tests: each test sources this file.
# FLOWRUN and FLOWRUN_SIM name the binaries under test, SRC the source tree.
set -euo pipefail
: "${SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${FLOWRUN:=$SRC/build/flowrun}"
: "${FLOWRUN_SIM:=$SRC/build/flowrun-sim}"
FLOWRUN=$(realpath "$FLOWRUN")
FLOWRUN_SIM=$(realpath "$FLOWRUN_SIM")
SRC=$(realpath "$SRC")
export FLOWRUN_LUA_DIR="$SRC/lua"
WORK=$(mktemp -d)
SIM_PID=""
cleanup() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok - $*"; }

# start_sim [flowrun-sim options...]: starts a simulator on a free port and
# sets SIM_URL (http://127.0.0.1:PORT) once it has printed its address.
start_sim() {
  exec {SIM_FD}< <(exec "$FLOWRUN_SIM" --port 0 "$@")
  SIM_PID=$!
  read -r -t 20 -u "$SIM_FD" SIM_URL || fail "flowrun-sim did not start"
  case "$SIM_URL" in http://127.0.0.1:*) ;; *) fail "unexpected sim address: $SIM_URL" ;; esac
}

sim_stats() { curl -sf "$SIM_URL/sim/stats"; }

# run_flowrun ARGS...: runs flowrun, keeping stdout, stderr and the exit code.
run_flowrun() {
  set +e
  "$FLOWRUN" "$@" >"$WORK/stdout" 2>"$WORK/stderr"
  RC=$?
  set -e
}

expect_rc() {
  [ "$RC" -eq "$1" ] || { cat "$WORK/stderr" >&2; fail "$2: exit code $RC, expected $1"; }
}

expect_stderr() {
  grep -qF -- "$1" "$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "stderr lacks: $1"; }
}

# jqr FILTER: evaluates FILTER on the JSON report in stdout.
jqr() { jq -r "$1" "$WORK/stdout"; }
