#!/usr/bin/env bash
# Two processes on one shared endpoint (max_parallel 3, one state store)
# share its slots: a run with a long queue does not keep taking every slot
# it frees while another process waits. Process A has 40 tasks; once it
# holds the 3 slots, process B starts with 3 tasks. Once B waits for a
# slot (its debug log says so), its first request must reach the simulator
# before A has sent 6 more (A frees a slot every ~33 ms; B asks again every
# 20-50 ms): a process that waits is served next, the one holding fewer
# slots first (31 of A's went first before). Both finish with the right
# outputs and the model never sees more than 3 at once. With
# CAPACITY_STORE=postgresql (tests/e2e/pg_capacity_fair.sh) the store is a
# PostgreSQL server of the test's own, the same checks.
source "$(dirname "$0")/lib.bash"
STATE="$WORK/state"
if [ "${CAPACITY_STORE:-}" = postgresql ]; then
  pg_store_start
  STATE=$PG_URL
fi
record="$WORK/record.jsonl"
start_sim --latency 100 --tps 0 --record "$record"

# workflow FILE NAME N: N independent tasks replying NAME-i on endpoint gpu.
workflow() {
  {
    echo "endpoint \"gpu\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"m\", max_parallel = 3 }"
    echo 'agent "a" {}'
    for i in $(seq 1 "$3"); do echo "task \"$2$i\" { agent = \"a\", prompt = \"REPLY: $2-$i\" }"; done
  } >"$1"
}
workflow "$WORK/a.lua" a 40
workflow "$WORK/b.lua" b 3
# Each JSON line of the record, a for process A's request, b for B's.
who() { jq -r '.body.messages[-1].content | capture("REPLY: (?<w>[ab])-").w' "$record"; }

"$FLOWRUN" "$WORK/a.lua" --state "$STATE" --out "$WORK/out-a" --json --no-cache \
  >"$WORK/a.json" 2>"$WORK/a.err" &
pid_a=$!
pid=$pid_a wait_running in_flight_at_least m 3
pid=$pid_a wait_running requests_at_least 6
"$FLOWRUN" "$WORK/b.lua" --state "$STATE" --out "$WORK/out-b" --json --no-cache \
  --log-level debug >"$WORK/b.json" 2>"$WORK/b.err" &
pid_b=$!
# From B's first wait for a slot (its debug log says so): how long B takes
# to start (longer under a sanitizer) is not counted against it.
b_waits() { grep -q "its slots are held by other processes" "$WORK/b.err"; }
pid=$pid_b wait_running b_waits
before=$(lines "$record")
wait "$pid_b" || { cat "$WORK/b.err" >&2; fail "process B did not exit 0"; }
wait "$pid_a" || { cat "$WORK/a.err" >&2; fail "process A did not exit 0"; }
for i in 1 2 3; do [ "$(cat "$WORK/out-b/b$i.txt")" = "b-$i" ] || fail "B's b$i output"; done
for i in 1 40; do [ "$(cat "$WORK/out-a/a$i.txt")" = "a-$i" ] || fail "A's a$i output"; done
peak=$(sim_stats | jq '.models.m.peak_in_flight')
[ "$peak" -le 3 ] || fail "the model saw $peak requests at once, max_parallel 3"
[ "$(who | grep -c .)" = 43 ] || fail "$(who | grep -c .) requests recorded, not 43"
# A's requests after B began to wait and before B's first.
a_first=$(who | tail -n +"$((before + 1))" | awk '$1 == "b" { print NR - 1; exit }')
[ -n "$a_first" ] || fail "no request of B's in the record"
[ "$a_first" -lt 6 ] ||
  fail "A sent $a_first requests after B began to wait, before B got a slot: A kept every slot it freed"
waits=$(jq '.endpoints.gpu.capacity_waits // 0' "$WORK/b.json")
[ "$waits" -ge 1 ] || fail "B waited for no slot ($waits): the test did not make it wait"
pass "a run with 40 queued tasks and one starting later share max_parallel 3: B's first request came $a_first of A's after B began to wait (B waited $waits times), peak $peak, both ok"
