# Shared helpers for the end-to-end tests: each test sources this file.
# FLOWRUN and FLOWRUN_SIM name the binaries under test, SRC the source tree.
set -euo pipefail
: "${SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${FLOWRUN:=$SRC/build/flowrun}"
: "${FLOWRUN_SIM:=$SRC/build/flowrun-sim}"
FLOWRUN=$(realpath "$FLOWRUN")
FLOWRUN_SIM=$(realpath "$FLOWRUN_SIM")
SRC=$(realpath "$SRC")
# Hermetic: a test reads nothing outside its $WORK but the source tree's
# committed files. No state directory, no policy directory and no user
# endpoints file from the caller's environment: the state goes to
# $WORK/.flowrun (the current directory's, see docs/cli.md), the built-in
# policies come from the binary, and ~/.config is not looked at.
unset FLOWRUN_STATE FLOWRUN_LUA_DIR
# Every test runs with a sentinel in each variable a key may come from; it
# must appear nowhere in what flowrun writes: captured stdout and stderr,
# reports, outputs, state databases (checked after each run_flowrun and,
# for every file left in $WORK, at exit). The first 12 bytes count too: a
# key cut off in a snippet is still a leak.
FLOWRUN_SENTINEL_KEY=sk-flowrun-sentinel-DO-NOT-LEAK-3f9c2a7e1b
SENTINEL_PREFIX=${FLOWRUN_SENTINEL_KEY:0:12}
for _v in FLOWRUN_SENTINEL_KEY OPENAI_API_KEY ANTHROPIC_API_KEY OPENROUTER_API_KEY \
  TOGETHER_API_KEY GEMINI_API_KEY GOOGLE_API_KEY GROQ_API_KEY MISTRAL_API_KEY SIM_TEST_KEY; do
  export "$_v=$FLOWRUN_SENTINEL_KEY"
done
unset _v
WORK=$(mktemp -d)
export XDG_CONFIG_HOME="$WORK/.config" XDG_CACHE_HOME="$WORK/.cache" HOME="$WORK"
SIM_PID=""
# leak_check PATH...: returns 1, saying where (key masked), if the sentinel
# key or its first 12 bytes is in a file under PATH (binary files too).
leak_check() {
  local files f
  files=$(grep -r -a -l -F -e "$SENTINEL_PREFIX" -- "$@" 2>/dev/null) || return 0
  echo "LEAK: the sentinel API key appears in:" >&2
  while IFS= read -r f; do
    LC_ALL=C grep -a -o -E ".{0,100}${SENTINEL_PREFIX}[A-Za-z0-9-]*.{0,100}" -- "$f" | head -5 |
      LC_ALL=C sed -e "s/${SENTINEL_PREFIX}[A-Za-z0-9-]*/<SENTINEL KEY>/g" -e 's/[^[:print:]]/./g' \
        -e "s|^|  $f: |" >&2
  done <<<"$files"
  return 1
}
cleanup() {
  local rc=$?
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
  if ! leak_check "$WORK"; then
    echo "FAIL: the sentinel API key leaked (see above)" >&2
    rc=1
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
cd "$WORK"

fail() { echo "FAIL: $*" >&2; exit 1; }

# pg_store_start: a PostgreSQL server of the test's own for a shared state
# store (tests/unit/support/pg.sh: PG_URL, PG_PASSWORD_URL, PG_DIR...; SKIP
# and exit 77 where the server cannot be installed), stopped at exit before
# the rest of cleanup.
pg_store_start() {
  source "$SRC/tests/unit/support/pg.sh"
  pg_start
  trap '_rc=$?; set +e; pg_stop; (exit $_rc); cleanup' EXIT
}
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

# sim_requests [MODEL]: how many chat requests the simulator has served, for
# MODEL or for all models together.
sim_requests() {
  if [ $# -gt 0 ]; then
    sim_stats | jq --arg m "$1" '.models[$m].requests // 0'
  else
    sim_stats | jq '[.models[].requests] | add // 0'
  fi
}
# requests_at_least N: the simulator has served N requests or more.
requests_at_least() { [ "$(sim_requests)" -ge "$1" ]; }
# in_flight_at_least MODEL N: MODEL has N requests in flight or more (none
# while it has had no request). in_flight_is MODEL N: MODEL, which has had
# requests, has exactly N in flight.
in_flight_at_least() { [ "$(sim_stats | jq --arg m "$1" '.models[$m].in_flight // 0')" -ge "$2" ]; }
in_flight_is() { [ "$(sim_stats | jq --arg m "$1" '.models[$m].in_flight')" = "$2" ]; }
# lines FILE: FILE's line count, 0 while it does not exist.
lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }

# wait_for COMMAND...: polls COMMAND every 25 ms until it succeeds, for at
# most 10 s; then ends the background run $pid (when set), shows its stderr
# and fails the test naming COMMAND. wait_running COMMAND... fails as soon
# as $pid has ended without COMMAND succeeding.
wait_for() { _wait 0 "$@"; }
wait_running() { _wait 1 "$@"; }
_wait() {
  local running=$1
  shift
  for _ in $(seq 1 400); do
    "$@" && return 0
    if [ "$running" = 1 ] && ! kill -0 "$pid" 2>/dev/null; then
      "$@" && return 0 # it may have ended right after doing it
      cat "$WORK/stderr" >&2
      fail "the run ended while waiting for: $*"
    fi
    sleep 0.025
  done
  "$@" && return 0
  [ -z "${pid:-}" ] || kill "$pid" 2>/dev/null || true
  cat "$WORK/stderr" >&2 2>/dev/null || true
  fail "timed out waiting for: $*"
}

# run_flowrun ARGS...: runs flowrun, keeping stdout, stderr and the exit code.
run_flowrun() {
  set +e
  "$FLOWRUN" "$@" >"$WORK/stdout" 2>"$WORK/stderr"
  RC=$?
  set -e
  leak_check "$WORK/stdout" "$WORK/stderr" || fail "flowrun $*: the sentinel API key leaked"
}

# run_watched SECONDS WHAT ARGS...: run_flowrun under a watchdog; a run
# still going after SECONDS is killed and fails the test with WHAT.
run_watched() {
  local secs=$1 what=$2
  shift 2
  set +e
  timeout "$secs" "$FLOWRUN" "$@" >"$WORK/stdout" 2>"$WORK/stderr"
  RC=$?
  set -e
  [ "$RC" -ne 124 ] || fail "$what: still running after the ${secs} s watchdog"
  leak_check "$WORK/stdout" "$WORK/stderr" || fail "flowrun $*: the sentinel API key leaked"
}

expect_rc() {
  [ "$RC" -eq "$1" ] || { cat "$WORK/stderr" >&2; fail "$2: exit code $RC, expected $1"; }
}

expect_stderr() {
  grep -qF -- "$1" "$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "stderr lacks: $1"; }
}

# jqr FILTER: evaluates FILTER on the JSON report in stdout.
jqr() { jq -r "$1" "$WORK/stdout"; }
