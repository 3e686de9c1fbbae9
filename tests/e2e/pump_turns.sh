#!/usr/bin/env bash
# 2,000 ready tasks with room for all of them: the pump places a bounded
# number per loop turn and lets the loop send them, so the first replies
# arrive while later tasks are still being routed (before, every task was
# routed and submitted before the first request left). Checked on the order
# of flowrun's own log lines, not a clock: the first completed transfer
# (http debug line) comes before the last routing decision (--explain).
# The tasks still start in the scheduler's order, and every one succeeds.
source "$(dirname "$0")/lib.bash"
N=2000
# Room for N transfers at once (two descriptors each, engine/util/fdlimit).
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((2 * N + 200)) ]; then
  echo "ok - skipped: ulimit -n $(ulimit -n) leaves no room for $N transfers at once"
  exit 0
fi
start_sim --latency 0 --tps 0
{
  echo "endpoint \"e\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"m\", max_parallel = $N }"
  echo 'agent "a" {}'
  echo "for i = 1, $N do task(\"t\" .. i) { agent = \"a\", prompt = \"REPLY: r\" .. i } end"
} >"$WORK/fan.lua"

run_watched 300 "$N ready tasks" "$WORK/fan.lua" --out "$WORK/out" --json --explain \
  --log-level debug --no-cache
expect_rc 0 "$N ready tasks"
[ "$(jqr '[.tasks[] | select(.status == "ok")] | length')" -eq "$N" ] || fail "not every task ok"
[ "$(sim_stats | jq '[.models[].requests] | add')" -eq "$N" ] || fail "not $N requests"
routed=$(grep -n '^.*explain: t[0-9]* -> ' "$WORK/stderr" | cut -d: -f1)
[ "$(echo "$routed" | wc -l)" -eq "$N" ] || fail "not $N routing decisions in the log"
last_routed=$(echo "$routed" | tail -1)
first_done=$(awk '/xfer=[0-9]* status=200/ && !n { n = NR } END { print n }' "$WORK/stderr")
[ -n "$first_done" ] || fail "no completed transfer in the debug log"
[ "$first_done" -lt "$last_routed" ] ||
  fail "the first reply (log line $first_done) came after the last task was routed (line $last_routed): nothing was sent while the pump routed"
# The scheduler's order: independent tasks of one rank start in file order.
order=$(grep -o 'explain: t[0-9]* ' "$WORK/stderr" | sed 's/explain: t//; s/ //')
[ "$order" = "$(seq 1 $N)" ] || fail "tasks were routed out of the scheduler's order"
for i in 1 1000 $N; do [ "$(cat "$WORK/out/t$i.txt")" = "r$i" ] || fail "t$i output"; done
pass "$N ready tasks: replies arrive while the pump still routes (first at line $first_done, last routed at line $last_routed), in order, all ok"
