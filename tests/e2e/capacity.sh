#!/usr/bin/env bash
# 40 independent tasks over 2 endpoints of max_parallel 3: the simulator,
# which counts what arrives before enforcing anything, never sees more than
# 3 at once per endpoint, and both endpoints are used to their capacity.
# (The makespan against 40/6 x latency is measured in tests/bench.)
source "$(dirname "$0")/lib.bash"
start_sim --latency 100 --tps 0

{
  echo "endpoint \"e1\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"m1\", max_parallel = 3 }"
  echo "endpoint \"e2\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"m2\", max_parallel = 3 }"
  echo 'agent "a" {}'
  for i in $(seq 1 40); do echo "task \"t$i\" { agent = \"a\", prompt = \"REPLY: r$i\" }"; done
} >"$WORK/fan.lua"

run_flowrun "$WORK/fan.lua" --out "$WORK/out" --json
expect_rc 0 "fan-out"
stats=$(sim_stats)
for m in m1 m2; do
  peak=$(echo "$stats" | jq ".models.\"$m\".peak_in_flight")
  rejected=$(echo "$stats" | jq ".models.\"$m\".rejected")
  [ "$peak" -le 3 ] || fail "$m saw $peak concurrent requests"
  [ "$peak" -eq 3 ] || fail "$m peaked at $peak, capacity 3 unused"
  [ "$rejected" -eq 0 ] || fail "$m rejected $rejected requests"
done
total=$(echo "$stats" | jq '[.models[].requests] | add')
[ "$total" -eq 40 ] || fail "$total requests for 40 tasks"
[ "$(jqr '.endpoints["e1"].peak_in_flight')" -le 3 ] || fail "flowrun's own peak"
for i in 1 17 40; do [ "$(cat "$WORK/out/t$i.txt")" = "r$i" ] || fail "t$i output"; done
pass "40 tasks, 2 x 3 slots: peak 3 per endpoint, 40 requests, every output right"

conns=$(echo "$stats" | jq .connections)
[ "$conns" -le 12 ] || fail "$conns connections for 40 requests: no reuse"
pass "connections are reused ($conns connections for 40 requests)"
