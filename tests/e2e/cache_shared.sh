#!/usr/bin/env bash
# The result cache shared by processes: process B, started from another
# folder, reuses the result process A stored, without a request (the
# simulator's request log holds A's one request), at no cost, with the same
# output, and reports the task as a cache hit; --no-cache in a third
# process asks again. First on SQLite (one state folder), then on
# PostgreSQL (`--state postgresql://...`, a server of the test's own from
# tests/unit/support/pg.sh). The PostgreSQL half is skipped, saying so,
# where the server is not installed or this flowrun's `run --help` does not
# offer a postgresql:// state.
source "$(dirname "$0")/lib.bash"
REC="$WORK/requests.jsonl"
start_sim --latency 5 --tps 0 --record "$REC"

cat >"$WORK/flow.lua" <<LUA
workflow { name = "cache-shared" }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "c-shared", max_parallel = 2,
                   price = { input = 1, output = 2 } }
agent "a" { system = "be brief" }
task "summary" { agent = "a", prompt = "Summarise the lab's week." }
LUA

# process NAME STATE ARGS...: flowrun run from folder $WORK/NAME on state
# STATE, its outputs in $WORK/NAME/out and its JSON report in stdout.
process() {
  local name=$1 state=$2
  shift 2
  mkdir -p "$WORK/$name"
  pushd "$WORK/$name" >/dev/null
  run_flowrun "$WORK/flow.lua" --state "$state" --out "$WORK/$name/out" --json "$@"
  popd >/dev/null
}

# shared STATE WHAT: A runs, B reuses, C with --no-cache asks again.
shared() {
  local state=$1 what=$2 before
  before=$(lines "$REC")
  process "a-$what" "$state"
  expect_rc 0 "$what: process A"
  [ "$(lines "$REC")" = $((before + 1)) ] || fail "$what: A sent $(($(lines "$REC") - before)) requests"
  [ "$(jqr '.tasks[0].cached')" = false ] || fail "$what: A's result came from the cache"
  process "b-$what" "$state"
  expect_rc 0 "$what: process B"
  [ "$(lines "$REC")" = $((before + 1)) ] || fail "$what: B sent a request ($(lines "$REC") in the log)"
  [ "$(jqr '.tasks[0].cached')" = true ] || fail "$what: B's task is not reported as a cache hit"
  [ "$(jqr '.tasks[0].decisions[0].outcome')" = cached ] || fail "$what: B's decision is not 'cached'"
  case "$(jqr .cost_usd)" in 0 | 0.0) ;; *) fail "$what: B cost $(jqr .cost_usd)" ;; esac
  diff -r "$WORK/a-$what/out" "$WORK/b-$what/out" >/dev/null || fail "$what: B's output differs from A's"
  process "c-$what" "$state" --no-cache
  expect_rc 0 "$what: process C"
  [ "$(lines "$REC")" = $((before + 2)) ] || fail "$what: --no-cache did not ask again"
  pass "$what: process B reuses process A's result without a request, at no cost; --no-cache asks again"
}

shared "$WORK/state" "SQLite"

if ! "$FLOWRUN" run --help 2>&1 | grep -q 'postgresql://'; then
  echo "SKIP: the PostgreSQL half: this flowrun's run --help offers no postgresql:// state yet"
  exit 0
fi
source "$SRC/tests/unit/support/pg.sh"
if ! pg__bindir >/dev/null; then
  echo "SKIP: the PostgreSQL half: PostgreSQL's server is not installed (bash tests/deps.sh)"
  exit 0
fi
pg_start || fail "the test's PostgreSQL server did not start"
trap 'pg_stop; cleanup' EXIT
shared "$PG_URL" "PostgreSQL"
