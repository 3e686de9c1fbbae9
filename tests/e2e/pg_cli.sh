#!/usr/bin/env bash
# flowrun's read commands on the shared PostgreSQL store: runs booked in a
# SQLite state folder (two users on two hosts, escalations, a failed
# check, a pending approval) are put into a real PostgreSQL server
# (tests/unit/support/pg.sh) by the test's helper pg_ledger, as a run books
# them there (in flight, then settled); then spend (by month, day, --daily,
# --json), runs, report, stats, stats --routing and graph --run print the
# same bytes from `--state URL` and `FLOWRUN_STATE=URL` as from `--state
# DIR`, and plan estimates the same; approve writes its decision into
# PostgreSQL; an unreachable server or a refused password is exit 74 with
# the URL's password masked.
source "$(dirname "$0")/lib.bash"
pg_store_start
start_sim --latency 5 --tps 0
STATE="$WORK/state"
PSQL=("$PG_BIN/psql" -X -q -A -t -h "$PG_SOCKET" -p "$PG_PORT" -U postgres -d flowrun_test)

cat >"$WORK/flow.lua" <<LUA
workflow { name = "team" }
endpoint "gpu" { tier = "local", url = "$SIM_URL/v1", model = "local-m", max_parallel = 2 }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "cloud-m", max_parallel = 2,
                   price = { input = 1.25, output = 3.5 } }
agent "coder" { type = "code" }
agent "critic" { type = "review" }
task "a" { agent = "coder", prompt = "Write a.", complexity = 0.3 }
task "b" { agent = "coder", prompt = "Write b.", complexity = 0.7, tier = "cloud" }
task "c" { agent = "critic", prompt = "Review {{a}}.", deps = { "a" }, retries = 0,
           min_quality = 0.5, check = function(out)
             if out:find("^cloud%-m") then return 0.9 end
             return 0.2, "not from the cloud"
           end }
task "d" { agent = "critic", prompt = "Summarise {{b}} and {{c}}.", deps = { "b", "c" } }
LUA
cat >"$WORK/gate.lua" <<LUA
workflow { name = "gate" }
endpoint "gpu" { tier = "local", url = "$SIM_URL/v1", model = "local-m" }
agent "w" { type = "code" }
task "draft" { agent = "w", prompt = "Draft.", approve = true }
task "ship" { agent = "w", prompt = "Ship {{draft}}.", deps = { "draft" } }
LUA

# The ledger: two people's runs on SQLite, and a checkpoint left pending.
run_flowrun "$WORK/flow.lua" --state "$STATE" --no-cache
expect_rc 0 "the first run"
run_flowrun "$WORK/flow.lua" --state "$STATE" --no-cache
expect_rc 0 "the second run"
# The second run was ben's, from another host.
sqlite3 "$STATE/state.db" "UPDATE attempts SET user_name = 'ben', host = 'lab2' WHERE run_id =
  (SELECT id FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1)"
run_flowrun "$WORK/gate.lua" --state "$STATE" </dev/null
[ "$(sqlite3 "$STATE/state.db" "SELECT state FROM approvals")" = pending ] ||
  fail "the gate's checkpoint is pending (exit $RC): $(cat "$WORK/stderr")"
"$PG_LEDGER" "$STATE/state.db" "$PG_URL" || fail "pg_ledger copied the ledger"
[ "$("${PSQL[@]}" -c "SELECT count(*) FROM attempts")" = \
  "$(sqlite3 "$STATE/state.db" "SELECT count(*) FROM attempts")" ] || fail "every attempt copied"
[ "$("${PSQL[@]}" -c "SELECT count(*) FROM attempts")" -ge 9 ] || fail "at least 9 attempts"
[ "$("${PSQL[@]}" -c "SELECT count(DISTINCT user_name) FROM attempts")" -ge 2 ] ||
  fail "two users' attempts"
pass "two users' runs and a pending checkpoint, booked on SQLite and put into PostgreSQL"

# same ARGS...: the command prints the same bytes and exits the same from
# the folder, from --state URL and from FLOWRUN_STATE=URL.
same() {
  local a b c ra rb rc
  set +e
  a=$("$FLOWRUN" "$@" --state "$STATE" 2>&1); ra=$?
  b=$("$FLOWRUN" "$@" --state "$PG_URL" 2>&1); rb=$?
  c=$(FLOWRUN_STATE="$PG_URL" "$FLOWRUN" "$@" 2>&1); rc=$?
  set -e
  [ "$ra" -eq 0 ] || fail "flowrun $* on SQLite: exit $ra: $a"
  [ "$ra" = "$rb" ] && [ "$ra" = "$rc" ] || fail "flowrun $*: exit $ra on SQLite, $rb and $rc on PostgreSQL: $b"
  [ "$a" = "$b" ] || { diff <(echo "$a") <(echo "$b") >&2; fail "flowrun $* --state URL differs"; }
  [ "$a" = "$c" ] || { diff <(echo "$a") <(echo "$c") >&2; fail "flowrun $* with FLOWRUN_STATE=URL differs"; }
  [ -n "$a" ] || fail "flowrun $* printed something"
}
month=$(date -u +%Y-%m)
day=$(date -u +%Y-%m-%d)
same spend
same spend --json
same spend --daily
same spend --day "$day" --json
same spend --month "$month"
same spend --month 2001-01 --json
out=$("$FLOWRUN" spend --state "$PG_URL")
grep -q "by user" <<<"$out" && grep -q "ben" <<<"$out" && grep -q "lab2" <<<"$out" ||
  fail "spend on PostgreSQL splits by user: $out"
pass "flowrun spend prints the same from PostgreSQL as from SQLite, by user and host too"

same runs
same runs --json
same runs team --limit 1 --json
same report last
same report last --json
same report last --workflow team
same stats
same stats --json
# What routing learned decays with the second it is read at: under load
# the three reads may fall in two seconds, so they are read again then.
same_routing() {
  local try
  for try in 1 2 3; do
    if (same "$@") 2>/dev/null; then return 0; fi
  done
  same "$@"
}
same_routing stats --routing
same_routing stats --routing --json
same graph "$WORK/flow.lua" --run last
same graph "$WORK/flow.lua" --run last --format mermaid
[ "$("$FLOWRUN" stats --routing --json --state "$PG_URL" | jq '[.. | objects | select(has("attempts"))] | length')" -gt 0 ] ||
  fail "stats --routing on PostgreSQL shows learned records"
pass "runs, report, stats, stats --routing and graph --run print the same from PostgreSQL"

# plan: its estimates from what the team's runs observed; the URL it names
# has its password masked.
PW_URL="postgresql://postgres:pw-PLAN-SECRET@127.0.0.1:$PG_PORT/flowrun_test"
estimates() { jq -c '[.tasks[] | {name, estimate, latency_ms, tokens}]' "$WORK/stdout"; }
run_flowrun plan "$WORK/flow.lua" --state "$STATE" --json
expect_rc 0 "plan from SQLite"
from_sqlite=$(estimates)
run_flowrun plan "$WORK/flow.lua" --state "$PW_URL" --json
expect_rc 0 "plan from PostgreSQL"
[ "$(estimates)" = "$from_sqlite" ] || fail "the plan's estimates differ: $(estimates) vs $from_sqlite"
[ "$(jq '[.tasks[].estimate.latency | select(. == "observed")] | length' "$WORK/stdout")" -ge 3 ] ||
  fail "the plan uses observed latencies: $(estimates)"
[ "$(jqr .observed_from)" = "postgresql://postgres:***@127.0.0.1:$PG_PORT/flowrun_test" ] ||
  fail "observed_from: $(jqr .observed_from)"
! grep -q "PLAN-SECRET" "$WORK/stdout" "$WORK/stderr" || fail "the plan printed the password"
pass "flowrun plan estimates from the shared store as from SQLite, naming it masked"

# approve writes its decision into the shared store.
run_flowrun approve "$WORK/gate.lua" draft --note "looks right" --state "$PG_URL"
expect_rc 0 "approve on PostgreSQL"
[ "$("${PSQL[@]}" -c "SELECT state || ' ' || note FROM approvals WHERE task = 'draft'")" = \
  "approved looks right" ] || fail "the decision is in PostgreSQL"
[ "$(sqlite3 "$STATE/state.db" "SELECT state FROM approvals")" = pending ] ||
  fail "the SQLite store is untouched"
run_flowrun approve "$WORK/gate.lua" ship --state "$PG_URL"
expect_rc 65 "a task without a checkpoint"
pass "approve records its decision in PostgreSQL"

# A run booked straight on the shared store is split by the labels a CI
# account sets (FLOWRUN_USER, FLOWRUN_HOST), as on SQLite, and what routing
# learned from it is there for the next run on any host.
before=$("$FLOWRUN" stats --routing --json --state "$PG_URL" | jq '[.endpoints[] | .all.attempts // 0] | add // 0')
FLOWRUN_USER=ci-bot FLOWRUN_HOST=ci-runner-7 run_flowrun "$WORK/flow.lua" --state "$PG_URL" --no-cache
expect_rc 0 "a run on the shared store"
[ "$("${PSQL[@]}" -c "SELECT count(*) FROM attempts WHERE user_name = 'ci-bot' AND host = 'ci-runner-7'")" -ge 4 ] ||
  fail "the run's attempts carry FLOWRUN_USER and FLOWRUN_HOST: $("${PSQL[@]}" -c "SELECT DISTINCT user_name, host FROM attempts")"
[ "$("${PSQL[@]}" -c "SELECT count(*) FROM runs WHERE user_name = 'ci-bot' AND host = 'ci-runner-7'")" = 1 ] ||
  fail "the run's row carries FLOWRUN_USER and FLOWRUN_HOST"
out=$("$FLOWRUN" spend --state "$PG_URL")
grep -q "ci-bot" <<<"$out" && grep -q "ci-runner-7" <<<"$out" || fail "spend splits by the labels: $out"
after=$("$FLOWRUN" stats --routing --json --state "$PG_URL" | jq '[.endpoints[] | .all.attempts // 0] | add // 0')
[ "$after" -gt "$before" ] || fail "the run's attempts teach the shared routing history ($before -> $after)"
pass "a run on the shared store is split by FLOWRUN_USER and FLOWRUN_HOST, and teaches the routing history"

# An unreachable server, a refused password: 74, the password masked.
DOWN="postgresql://flowrun:pw-NEVER-SHOWN@127.0.0.1:1/flowrun_test"
for cmd in "spend" "runs" "report last" "stats" "stats --routing" \
  "graph $WORK/flow.lua --run last" "approve $WORK/gate.lua draft"; do
  # shellcheck disable=SC2086
  run_flowrun $cmd --state "$DOWN"
  expect_rc 74 "flowrun $cmd on an unreachable server"
  ! grep -q "NEVER-SHOWN" "$WORK/stdout" "$WORK/stderr" || fail "flowrun $cmd printed the password"
  expect_stderr "postgresql://flowrun:***@127.0.0.1:1/flowrun_test"
done
FLOWRUN_STATE="$DOWN" run_flowrun spend
expect_rc 74 "FLOWRUN_STATE naming an unreachable server"
! grep -q "NEVER-SHOWN" "$WORK/stderr" || fail "FLOWRUN_STATE's password printed"
WRONG="postgresql://pwuser:not-${PG_PASSWORD}@127.0.0.1:$PG_PORT/flowrun_test"
run_flowrun spend --state "$WRONG"
expect_rc 74 "a refused password"
! grep -q -- "not-${PG_PASSWORD}" "$WORK/stderr" || fail "the refused password printed"
expect_stderr "password authentication failed"
pass "an unreachable database or a refused password is exit 74 with the URL's password masked"
