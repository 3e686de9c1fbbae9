#!/usr/bin/env bash
# An endpoint's max_parallel holds across every flowrun process sharing one
# state store: six processes started at once on one state directory, each
# with 6 tasks on one local endpoint of max_parallel 3 (same name, same
# simulator model), never put more than 3 requests on the model at once,
# ten times over, and every process succeeds with the right outputs. With
# `shared = false` the same runs go past 3 (the check can fail). A process
# killed with SIGKILL mid-run leaves its slots to the others: they finish.
# With CAPACITY_STORE=postgresql (tests/e2e/pg_capacity.sh) the store is a
# PostgreSQL server of the test's own, the same checks.
source "$(dirname "$0")/lib.bash"
STATE="$WORK/state"
if [ "${CAPACITY_STORE:-}" = postgresql ]; then
  pg_store_start
  STATE=$PG_URL
fi
start_sim --latency 200 --tps 0
PROCS=6
TASKS=6

# workflow FILE MODEL SHARED: one endpoint "gpu" of max_parallel 3 on MODEL
# (`shared = false` when SHARED is false) and TASKS independent tasks.
workflow() {
  local shared=""
  [ "$3" = false ] && shared=", shared = false"
  {
    echo "endpoint \"gpu\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"$2\", max_parallel = 3$shared }"
    echo 'agent "a" {}'
    for i in $(seq 1 "$TASKS"); do echo "task \"t$i\" { agent = \"a\", prompt = \"REPLY: r$i\" }"; done
  } >"$1"
}

# round N MODEL SHARED: PROCS processes at once on the shared state; each
# must exit 0 with its outputs. Prints MODEL's peak in flight.
round() {
  local n=$1 model=$2 shared=$3 pids=() p
  for p in $(seq 1 "$PROCS"); do
    workflow "$WORK/w$n-$p.lua" "$model" "$shared"
    "$FLOWRUN" "$WORK/w$n-$p.lua" --state "$STATE" --out "$WORK/out$n-$p" --json --no-cache \
      >"$WORK/stdout$n-$p" 2>"$WORK/stderr$n-$p" &
    pids+=($!)
  done
  for p in $(seq 1 "$PROCS"); do
    if ! wait "${pids[$((p - 1))]}"; then
      cat "$WORK/stderr$n-$p" >&2
      fail "round $n: process $p did not exit 0"
    fi
    for i in 1 "$TASKS"; do
      [ "$(cat "$WORK/out$n-$p/t$i.txt")" = "r$i" ] || fail "round $n: process $p: t$i output"
    done
  done
  ! grep -l "handles left open" "$WORK"/stderr"$n"-* >&2 || fail "round $n: a process left handles open"
  sim_stats | jq --arg m "$model" '.models[$m].peak_in_flight'
}

waits=0
for n in $(seq 1 10); do
  peak=$(round "$n" "m$n" true)
  [ "$peak" -le 3 ] || fail "round $n: the model saw $peak requests at once, max_parallel 3"
  w=$(cat "$WORK"/stdout"$n"-* | jq -s '[.[].endpoints.gpu.capacity_waits // 0] | add')
  waits=$((waits + w))
done
# Six processes of 3 slots each for 3 slots in all: most requests waited
# for slots held by another process, and the reports say so.
[ "$waits" -gt 0 ] || fail "no report counted a wait for capacity held by other processes"
# Every report that counted waits says how long they took (any round: the
# first round's processes start in turn while the first applies the schema,
# and may not meet).
cat "$WORK"/stdout[0-9]-* "$WORK"/stdout10-* | jq -s -e \
  '[.[].endpoints.gpu | select((.capacity_waits // 0) > 0)] | length > 0 and all(.capacity_wait_ms > 0)' \
  >/dev/null || fail "a report counted capacity waits without capacity_wait_ms"
pass "6 processes x $TASKS tasks on max_parallel 3, 10 rounds: peak <= 3, all ok ($waits waits reported)"

# The same with shared = false: each process holds its own 3 slots only.
over=0
for n in 11 12 13; do
  peak=$(round "$n" "m$n" false)
  [ "$peak" -gt 3 ] && over=1
done
[ "$over" = 1 ] || fail "shared = false never went past 3 at once: the check above proves nothing"
for f in "$WORK"/stdout11-*; do
  jq -e '.endpoints.gpu | has("capacity_waits") | not' "$f" >/dev/null ||
    fail "a shared = false run reported capacity waits"
done
pass "shared = false: processes go past max_parallel 3 together"

# A process killed mid-run: its slots come free to the others, which finish.
TASKS=10
pids=()
for p in $(seq 1 4); do
  workflow "$WORK/wk-$p.lua" mk true
  "$FLOWRUN" "$WORK/wk-$p.lua" --state "$STATE" --out "$WORK/outk-$p" --json --no-cache \
    >"$WORK/stdoutk-$p" 2>"$WORK/stderrk-$p" &
  pids+=($!)
done
pid=${pids[0]}
wait_for in_flight_at_least mk 3
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
! kill -0 "$pid" 2>/dev/null || fail "the killed process $pid is still there"
for p in 2 3 4; do
  if ! wait "${pids[$((p - 1))]}"; then
    cat "$WORK/stderrk-$p" >&2
    fail "after the kill: process $p did not exit 0"
  fi
  [ "$(cat "$WORK/outk-$p/t10.txt")" = "r10" ] || fail "after the kill: process $p: t10 output"
done
peak=$(sim_stats | jq '.models.mk.peak_in_flight')
[ "$peak" -le 3 ] || fail "around the kill the model saw $peak requests at once"
waited=$(cat "$WORK"/stdoutk-[234] | jq -s '[.[].endpoints.gpu.capacity_wait_ms // 0] | max')
pass "a process killed with SIGKILL mid-run: the other 3 finish (longest wait of one run ${waited} ms in all)"
