#!/usr/bin/env bash
# A process that looks dead to the others but is not: on a shared PostgreSQL
# store, process A leases a share of a monthly cap and has requests in
# flight when it is stopped (SIGSTOP: a laptop put to sleep, a machine
# starved, a network cut). Past its lease timeout, B and C start, find A's
# owner dead, reclaim its share and spend the cap. A is then woken: it must
# not spend the share it held (its reservations are fenced by its lease on
# the server, which is gone), its replies in flight are booked at what they
# really cost, and the total the simulator served stays within the cap.
# Skipped (77) where PostgreSQL cannot be installed.
source "$(dirname "$0")/lib.bash"
pg_store_start
start_sim --latency 300 --tps 0

CAP=1.5
PRICE_IN=200
PRICE_OUT=1000
WORDS=$(seq -f "w%g" 1 40 | tr '\n' ' ')

# flow NAME MODEL TASKS: a workflow under the monthly cap whose replies are
# 40 words each (as long as max_tokens allows: actual close to worst case).
flow() {
  {
    echo "workflow { name = \"$1\", budget = { monthly_usd = $CAP }, defaults = { max_tokens = 40 } }"
    echo "endpoint \"cloud\" { tier = \"cloud\", url = \"$SIM_URL/v1\", model = \"$2\","
    echo "                   max_parallel = 8, price = { input = $PRICE_IN, output = $PRICE_OUT } }"
    echo 'agent "a" {}'
    for i in $(seq 1 "$3"); do
      echo "task \"t$i\" { agent = \"a\", prompt = \"REPLY: $WORDS\" }"
    done
  } >"$WORK/$1.lua"
}
flow a ma 40
flow b mb 40
flow c mb 40
psql -q "$PG_URL" -c "CREATE DATABASE pause" >/dev/null
STATE="${PG_URL%/*}/pause"
q() { psql -At "$STATE" -c "$1"; }

start() {
  FLOWRUN_USER="$1" "$FLOWRUN" "$WORK/$1.lua" --state "$STATE" --out "$WORK/o-$1" --json \
    >"$WORK/$1.json" 2>"$WORK/$1.err" &
}

start a
pid_a=$!
wait_for in_flight_at_least ma 8
kill -STOP "$pid_a"
# Its owner expires on the server's clock (lease 5 s after its last heartbeat).
owner_dead() { [ "$(q "SELECT count(*) FROM owners WHERE pid = $pid_a AND expires <= now()")" = 1 ]; }
for _ in $(seq 1 40); do owner_dead && break; sleep 0.25; done
owner_dead || fail "process A's owner did not expire while it was stopped"
held=$(q "SELECT round(amount::numeric, 4) FROM leases l JOIN runs r ON r.id = l.run_id WHERE r.pid = $pid_a AND l.closed_at IS NULL")
echo "# A stopped after $(sim_requests ma) requests, holding a lease of \$$held"

start b
pid_b=$!
start c
pid_c=$!
for p in $pid_b $pid_c; do
  set +e; wait "$p"; rc=$?; set -e
  [ "$rc" = 0 ] || [ "$rc" = 3 ] || { cat "$WORK"/b.err "$WORK"/c.err >&2; fail "B or C exited $rc"; }
done
reclaimed=$(q "SELECT count(*) FROM leases l JOIN runs r ON r.id = l.run_id WHERE r.pid = $pid_a AND l.closed_by = 'reclaimed'")
[ "$reclaimed" -ge 1 ] || fail "A's lease was not reclaimed while it looked dead (the fault did not happen)"

kill -CONT "$pid_a"
set +e; wait "$pid_a"; rc=$?; set -e
[ "$rc" = 0 ] || [ "$rc" = 3 ] || { cat "$WORK/a.err" >&2; fail "A exited $rc after it was woken"; }
pass "A, woken after its lease was reclaimed, ends $rc"
grep -q "share of the shared cap does not cover the request" "$WORK/a.err" ||
  fail "A's reservations were not refused by its lost share: $(tail -n 5 "$WORK/a.err")"
pass "A's reservations met the fence of its reclaimed share and it leased again"

served=$(sim_stats | jq "([.models[] | .input_tokens * $PRICE_IN + .output_tokens * $PRICE_OUT] | add) / 1e6")
booked=$(q "SELECT coalesce(sum(cost_usd), 0) FROM attempts")
awk -v s="$served" -v c="$CAP" 'BEGIN { exit !(s <= c + 1e-12) }' || {
  q "SELECT r.pid, r.status, round(sum(a.cost_usd)::numeric, 4), count(*) FROM attempts a JOIN runs r ON r.id = a.run_id GROUP BY 1, 2" >&2
  fail "three processes spent \$$served against a cap of \$$CAP (the ledger: \$$booked)"
}
pass "the simulator served \$$served of the \$$CAP cap"
awk -v a="$booked" -v b="$served" 'BEGIN { d = a - b; exit !(d < 1e-9 && d > -1e-9) }' ||
  fail "the ledger books \$$booked, the simulator served \$$served"
pass "the ledger books what was served, A's replies in flight at their real cost"
stopped=$(jq '[.tasks[] | select(.status == "budget")] | length' "$WORK/a.json")
[ "$stopped" -gt 0 ] || fail "A spent on: no task of its was stopped by the cap"
jq -r '.tasks[] | select(.status == "budget") | .reason' "$WORK/a.json" | grep -v -q "monthly cap" &&
  fail "a task of A stopped for another reason: $(jq -c '[.tasks[].reason]' "$WORK/a.json")"
pass "A's $stopped tasks left stopped at the monthly cap"
