#!/usr/bin/env bash
# Faults of a shared PostgreSQL store (docs/team.md): the server restarted
# (pg_ctl restart -m fast) while two runs are in flight on it: both end with
# every task done, every request the simulator served is booked exactly
# once (the ledger's rows and tokens, read with psql, against the
# simulator's own counts), spend stays under the monthly cap, and each run's
# report has a store block counting the reconnection. A database that
# cannot be reached at start: exit 74, the URL named with its password
# masked, the password nowhere in what flowrun wrote (nor in the database).
# A row lock held by another session past the lock timeout: sent again.
# A process killed with requests in flight: the next run marks its run
# crashed and those requests cancelled, their worst case kept. Skipped (77)
# where PostgreSQL cannot be installed.
source "$(dirname "$0")/lib.bash"
pg_store_start
start_sim --latency 150 --tps 0 --model mk:latency=3000 --model ms:latency=6000
TASKS=40
CAP=5
PRICE_IN=200
PRICE_OUT=1000

# flow FILE N [ENDPOINT [SLOW]]: TASKS tasks on a priced endpoint (cloud
# unless named) of max_parallel 3 under a monthly cap, each reply of 1-30
# random words; with SLOW, one more task on endpoint SLOW (model ms, 6 s),
# so that the run lasts 6 s from its first request however fast the others
# go.
flow() {
  local i k ep=${3:-cloud} slow=${4:-}
  {
    echo "workflow { name = \"fault$2\", budget = { monthly_usd = $CAP }, defaults = { max_tokens = 40 } }"
    echo "endpoint \"$ep\" { tier = \"cloud\", url = \"$SIM_URL/v1\", model = \"mf\","
    echo "                   max_parallel = 3, price = { input = $PRICE_IN, output = $PRICE_OUT } }"
    echo 'agent "a" {}'
    for i in $(seq 1 $TASKS); do
      k=$((RANDOM % 30 + 1))
      echo "task \"t$i\" { agent = \"a\", endpoint = \"$ep\", prompt = \"REPLY: $(seq -f "w%g" 1 $k | tr '\n' ' ')\" }"
    done
    if [ -n "$slow" ]; then
      echo "endpoint \"$slow\" { tier = \"cloud\", url = \"$SIM_URL/v1\", model = \"ms\","
      echo "                   max_parallel = 1, price = { input = $PRICE_IN, output = $PRICE_OUT } }"
      echo "task \"slow\" { agent = \"a\", endpoint = \"$slow\", prompt = \"REPLY: slow\" }"
    fi
  } >"$1"
}

# Each run on an endpoint of its own (the same model), so that both have
# requests in flight at once: on one shared endpoint the second would wait
# for the first's slots. Each also has a 6 s task, so that the first run
# is still going when the second, started late on a loaded machine, has
# booked its first attempt and the restart comes.
pids=()
eps=(cloud cloud2)
for n in 1 2; do
  flow "$WORK/f$n.lua" "$n" "${eps[$((n - 1))]}" "slow$n"
  "$FLOWRUN" "$WORK/f$n.lua" --state "$PG_URL" --out "$WORK/of$n" --json --no-cache \
    >"$WORK/f$n.json" 2>"$WORK/f$n.err" &
  pids+=($!)
done
# Both runs past their start (each has booked an attempt, so its store is
# open) and requests on the wire: the restart comes in the middle of both,
# however slowly one of them starts.
runs_booking() {
  [ "$(psql -At "$PG_URL" -c "SELECT count(DISTINCT run_id) FROM attempts" 2>/dev/null)" = 2 ]
}
wait_for runs_booking
wait_for requests_at_least 6
running=$(psql -At "$PG_URL" -c "SELECT count(*) FROM runs WHERE status = 'running'")
[ "$running" = 2 ] || fail "$running runs still going when the restart was to come, not 2"
(cd / && bash "$SRC/tests/unit/support/pg.sh" restart "$PG_DIR") # from a folder the server's user may enter
for n in 1 2; do
  rc=0
  wait "${pids[$((n - 1))]}" || rc=$?
  [ "$rc" = 0 ] || { cat "$WORK/f$n.err" >&2; fail "run $n exited $rc after the restart"; }
  [ "$(jq '[.tasks[] | select(.status == "ok")] | length' "$WORK/f$n.json")" = $((TASKS + 1)) ] ||
    fail "run $n: not every task ended ok"
done
served=$(sim_requests mf)
[ "$served" -ge $((2 * TASKS)) ] || fail "the simulator served $served requests"
q() { psql -At "$PG_URL" -c "$1"; }
[ "$(q "SELECT count(*) FROM attempts WHERE outcome = 'pending'")" = 0 ] ||
  fail "attempts left in flight: $(q "SELECT run_id, task FROM attempts WHERE outcome = 'pending'")"
booked=$(q "SELECT count(*) FROM attempts WHERE model = 'mf'")
[ "$booked" = "$served" ] || fail "the ledger has $booked attempts, the simulator served $served requests"
sim_tok=$(sim_stats | jq '"\(.models.mf.input_tokens) \(.models.mf.output_tokens)"' -r)
led_tok=$(q "SELECT sum(input_tokens) || ' ' || sum(output_tokens) FROM attempts WHERE model = 'mf'")
[ "$sim_tok" = "$led_tok" ] || fail "tokens: the simulator served $sim_tok, the ledger books $led_tok"
spent=$(q "SELECT sum(cost_usd) FROM attempts")
awk -v s="$spent" -v c="$CAP" 'BEGIN { exit !(s <= c + 1e-12) }' || fail "spent \$$spent over the cap \$$CAP"
[ "$(q "SELECT count(*) FROM runs WHERE status = 'ok'")" = 2 ] || fail "runs: $(q "SELECT id, status FROM runs")"
for n in 1 2; do
  jq -e '.store.kind == "postgresql" and .store.reconnects >= 1 and .store.down_ms > 0' \
    "$WORK/f$n.json" >/dev/null || fail "run $n: the report's store block: $(jq -c .store "$WORK/f$n.json")"
  grep -q "state store: the connection to the shared postgresql store was lost and came back" \
    "$WORK/f$n.err" || fail "run $n: the summary does not say the store came back"
done
pass "PostgreSQL restarted under two runs: both ok, $served requests booked once each (\$$spent of a \$$CAP cap), the reports count the reconnection"

# A lock held by another session past the lock timeout (2 s): the run's
# reservations time out, are sent again, and the run ends ok. The run
# starts once the lock is held (the session sleeps with it), and the lock
# outlasts the timeout by 2.5 s, however long a loaded machine takes to
# start flowrun.
PGAPPNAME=flowrun-test-locker psql -q "$PG_URL" -c "BEGIN" \
  -c "SELECT name FROM endpoints WHERE name = 'cloud' FOR UPDATE" \
  -c "SELECT pg_sleep(4.5)" -c "COMMIT" >/dev/null &
locker=$!
held=0
for _ in $(seq 1 100); do
  held=$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'flowrun-test-locker'
            AND state = 'active' AND query LIKE '%pg_sleep%'")
  [ "$held" = 1 ] && break
  sleep 0.05
done
[ "$held" = 1 ] || fail "the locking session did not take its lock within 5 s"
flow "$WORK/f5.lua" 5
"$FLOWRUN" "$WORK/f5.lua" --state "$PG_URL" --out "$WORK/of5" --json --no-cache >"$WORK/f5.json" 2>"$WORK/f5.err" ||
  { cat "$WORK/f5.err" >&2; fail "a run behind a lock held elsewhere"; }
wait "$locker"
jq -e '.store.lock_retries >= 1' "$WORK/f5.json" >/dev/null ||
  fail "no lock retry counted: $(jq -c .store "$WORK/f5.json")"
[ "$(q "SELECT count(*) FROM attempts WHERE run_id = '$(jq -r .run "$WORK/f5.json")' AND outcome = 'ok'")" = "$TASKS" ] ||
  fail "the run behind the lock did not book every task"
pass "a lock held by another session past the lock timeout: sent again, the run ends ok ($(jq .store.lock_retries "$WORK/f5.json") retries)"

# Unreachable at start: a port nobody listens on, a password in the URL.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="postgresql://pwuser:$PG_PASSWORD@127.0.0.1:$port/flowrun_test"
rc=0
"$FLOWRUN" "$WORK/f1.lua" --state "$url" --out "$WORK/ou" --json --no-cache >"$WORK/u.out" 2>"$WORK/u.err" || rc=$?
[ "$rc" = 74 ] || { cat "$WORK/u.err" >&2; fail "an unreachable database: exit $rc, not 74"; }
grep -q "postgresql://pwuser:\*\*\*@127.0.0.1:$port/flowrun_test" "$WORK/u.err" ||
  fail "the message does not name the URL masked: $(cat "$WORK/u.err")"
FLOWRUN_STATE="$url" "$FLOWRUN" "$WORK/f1.lua" --out "$WORK/ou2" --json --no-cache >"$WORK/u2.out" 2>"$WORK/u2.err" || rc=$?
[ "$rc" = 74 ] || fail "an unreachable database in FLOWRUN_STATE: exit $rc, not 74"
# The password works against the server (a database of the role's own), and
# is written nowhere.
flow "$WORK/f3.lua" 3
psql -q "$PG_URL" -c "CREATE DATABASE pwdb OWNER pwuser" >/dev/null
"$FLOWRUN" "$WORK/f3.lua" --state "postgresql://pwuser:$PG_PASSWORD@127.0.0.1:$PG_PORT/pwdb" \
  --out "$WORK/of3" --json --no-cache >"$WORK/f3.json" 2>"$WORK/f3.err" || { cat "$WORK/f3.err" >&2; fail "a run with a password in the URL"; }
! grep -r -a -l -F -e "$PG_PASSWORD" "$WORK" >&2 || fail "the password is in the files above"
! psql -At "${PG_URL%/*}/pwdb" -c "SELECT * FROM runs; SELECT * FROM reports; SELECT * FROM owners" |
  grep -q -F -e "$PG_PASSWORD" ||
  fail "the password is in the database"
pass "unreachable at start: exit 74 naming the URL with its password masked; the password nowhere"

# A process killed with requests in flight: once its owner's lease (5 s) has
# passed, the next run to begin marks its run crashed and its requests in
# flight cancelled, their worst case kept (as the SQLite store does).
{
  echo 'workflow { name = "killed" }'
  echo "endpoint \"slow\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"mk\", max_parallel = 2 }"
  echo 'agent "a" {}'
  for i in 1 2 3 4; do echo "task \"k$i\" { agent = \"a\", prompt = \"REPLY: k$i\" }"; done
} >"$WORK/k.lua"
"$FLOWRUN" "$WORK/k.lua" --state "$PG_URL" --out "$WORK/ok" --json --no-cache >"$WORK/k.json" 2>"$WORK/k.err" &
pid=$!
wait_for in_flight_at_least mk 2
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
killed=$(q "SELECT id FROM runs WHERE workflow = 'killed'")
[ "$(q "SELECT count(*) FROM attempts WHERE run_id = '$killed' AND outcome = 'pending'")" -ge 1 ] ||
  fail "the killed run has no request in flight in the ledger"
sleep 6 # its owner's lease passes
"$FLOWRUN" "$WORK/f3.lua" --state "$PG_URL" --out "$WORK/of4" --json --no-cache >"$WORK/f4.json" 2>"$WORK/f4.err" ||
  { cat "$WORK/f4.err" >&2; fail "the run after the kill"; }
[ "$(q "SELECT status FROM runs WHERE id = '$killed'")" = crashed ] || fail "the killed run is not crashed"
[ "$(q "SELECT count(*) FROM attempts WHERE run_id = '$killed' AND outcome = 'pending'")" = 0 ] ||
  fail "the killed run's requests are still in flight in the ledger"
q "SELECT error FROM attempts WHERE run_id = '$killed' AND outcome = 'cancelled'" | grep -q "worst case is kept" ||
  fail "the killed run's requests are not cancelled: $(q "SELECT task, outcome FROM attempts WHERE run_id = '$killed'")"
pass "a process killed mid-run: the next run marks its run crashed and its requests in flight cancelled"
