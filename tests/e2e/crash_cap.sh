#!/usr/bin/env bash
# The monthly cap holds when processes die: six flowrun processes share one
# state directory and one monthly cap; two are killed -9 mid-run, at the
# worst moment (their requests were answered, and so billed, but not yet
# booked: the test stops them, lets the simulator answer everything they had
# in flight, then kills them). The survivors reclaim the dead processes'
# leases and spend what is left. In every repetition what the simulator
# billed (its usage x the price) stays within the cap, and the ledger
# (`flowrun spend`) is never below what was billed.
source "$(dirname "$0")/lib.bash"
# The victims' models answer slowly (a second: longer than a poll takes on a
# loaded machine), so they are caught with requests in flight; the
# survivors' quickly.
start_sim --latency 25 --tps 0 --model slow1:latency=1000,tps=0 --model slow2:latency=1000,tps=0

REPS=${CRASH_CAP_REPS:-20}
words="w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 w20"
# Input is free and every reply is max_tokens long, so a request's worst
# case is what it costs: 20 tokens x $250 per million = $0.005.
cap=0.5
for n in 1 2 3 4 5 6; do
  # The survivors send one request at a time, so they are still spending
  # when the victims die.
  model=paid parallel=1
  [ "$n" -le 2 ] && model=slow$n parallel=8
  cat >"$WORK/flow$n.lua" <<LUA
workflow { name = "crash$n", budget = { monthly_usd = $cap }, defaults = { max_tokens = 20 } }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "$model", max_parallel = $parallel,
                   price = { input = 0, output = 250 } }
agent "a" {}
for i = 1, 40 do task("t" .. i) { agent = "a", prompt = "REPLY: $words" } end
LUA
done

# wait_for JQ: polls the simulator's counters until JQ is true, for at most
# 30 s (a loaded machine starts six runs slowly; a quiet one takes < 1 s).
wait_for() {
  local until=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$until" ]; do
    [ "$(sim_stats | jq "$1")" = true ] && return 0
    sleep 0.005
  done
  show_state
  fail "the simulator never reached: $1"
}

show_state() { sim_stats >&2; for n in 1 2 3 4 5 6; do tail -3 "$WORK/e$n" >&2; done; }
billed() { sim_stats | jq '[.models[] | .input_tokens * 0 + .output_tokens * 250] | add / 1e6'; }

worst_over=0
for rep in $(seq 1 "$REPS"); do
  curl -sf -X POST "$SIM_URL/sim/reset" >/dev/null
  state="$WORK/state$rep"
  pids=()
  for n in 1 2 3 4 5 6; do
    "$FLOWRUN" "$WORK/flow$n.lua" --state "$state" --out "$WORK/o$rep-$n" --json \
      >"$WORK/r$n.json" 2>"$WORK/e$n" &
    pids+=($!)
  done
  # Each victim is stopped as soon as it has a request in flight (on a
  # loaded machine they start far apart: waiting for both at once let the
  # first one finish), then the simulator answers (and bills) all they had
  # in flight, and they are killed before they book a reply.
  stopped=(0 0)
  for _ in $(seq 1 400); do
    st=$(sim_stats)
    for i in 0 1; do
      [ "${stopped[$i]}" = 0 ] || continue
      [ "$(jq "(.models.slow$((i + 1)).in_flight // 0) >= 1" <<<"$st")" = true ] || continue
      kill -STOP "${pids[$i]}"
      stopped[$i]=1
    done
    [ "${stopped[*]}" = "1 1" ] && break
    sleep 0.005
  done
  [ "${stopped[*]}" = "1 1" ] || { show_state; fail "rep $rep: the victims never had requests in flight"; }
  wait_for '(.models.slow1.in_flight // 1) == 0 and (.models.slow2.in_flight // 1) == 0'
  kill -KILL "${pids[0]}" "${pids[1]}"
  set +e
  # Both were stopped with a request answered and not booked: each must die
  # by the SIGKILL (137), not have finished before it.
  for i in 0 1; do
    wait "${pids[$i]}" 2>/dev/null; rc=$?
    [ "$rc" = 137 ] || { cat "$WORK/e$((i + 1))" >&2; fail "rep $rep: victim $((i + 1)) exited $rc, not by SIGKILL"; }
  done
  for i in 2 3 4 5; do
    wait "${pids[$i]}"; rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || { cat "$WORK/e$((i + 1))" >&2; fail "rep $rep: survivor exit $rc"; }
  done
  set -e
  spent=$(billed)
  [ "$(sim_stats | jq '.models.slow1.output_tokens > 0 and .models.slow2.output_tokens > 0')" = true ] ||
    fail "rep $rep: the killed processes were billed nothing: the test proves nothing"
  awk -v s="$spent" -v c="$cap" 'BEGIN { exit !(s <= c + 1e-9) }' ||
    fail "rep $rep: six processes, two killed -9, spent \$$spent against a monthly cap of \$$cap"
  # The ledger counts every request that may have been billed.
  run_flowrun spend --state "$state" --json
  expect_rc 0 "spend"
  ledger=$(jqr '[.months[].cost_usd] | add // 0')
  awk -v l="$ledger" -v s="$spent" 'BEGIN { exit !(l >= s - 1e-9) }' ||
    fail "rep $rep: the ledger says \$$ledger, the simulator billed \$$spent"
  worst_over=$(awk -v s="$spent" -v w="$worst_over" 'BEGIN { print (s > w ? s : w) }')
done
pass "$REPS repetitions, two of six processes killed -9 each: at most \$$worst_over of the \$$cap cap billed, never more than the ledger says"
