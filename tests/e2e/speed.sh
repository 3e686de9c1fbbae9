#!/usr/bin/env bash
# The speed policy on 40 independent tasks over 4 local + 10 cloud slots:
# it counts the ready tasks queued ahead for an endpoint, so it overflows to
# the cloud instead of queueing everything on the local slots. Its plan
# (a virtual clock, deterministic) is never slower than balanced's, and a
# rehearsal with speed puts work on the cloud. Wall-clock figures are in
# tests/bench/speed.sh and docs/performance.md, not asserted here.
source "$(dirname "$0")/lib.bash"

{
  echo 'endpoint "box" { tier = "local", url = "http://127.0.0.1:1/v1", model = "m", max_parallel = 4 }'
  echo 'endpoint "api" { tier = "cloud", url = "http://127.0.0.1:1/v1", model = "c", max_parallel = 10,'
  echo '                 price = { input = 0.5, output = 1.5 } }'
  echo 'agent "a" {}'
  echo 'for i = 1, 40 do task("t" .. i) { agent = "a", prompt = "REPLY: r" .. i } end'
} >"$WORK/fan.lua"

declare -A makespan cloud
for policy in balanced speed; do
  run_flowrun plan "$WORK/fan.lua" --policy "$policy" --sim-latency 200 --sim-tps 0 --json
  expect_rc 0 "plan with $policy"
  makespan[$policy]=$(jqr .makespan_ms)
  cloud[$policy]=$(jqr '[.tasks[] | select(.tier == "cloud")] | length')
done
[ "${cloud[speed]}" -gt 0 ] || fail "the speed plan puts nothing on the cloud"
awk -v s="${makespan[speed]}" -v b="${makespan[balanced]}" 'BEGIN { exit !(s <= b) }' ||
  fail "speed's plan takes ${makespan[speed]} ms, balanced's ${makespan[balanced]} ms"
pass "plans: speed ${makespan[speed]} ms (${cloud[speed]} on the cloud) <= balanced ${makespan[balanced]} ms (${cloud[balanced]})"


# A rehearsal with speed uses the cloud too, and every task succeeds.
run_flowrun "$WORK/fan.lua" --sim --policy speed --sim-latency 50 --sim-tps 0 --out "$WORK/out" --json
expect_rc 0 "rehearsal with speed"
n=$(jqr '[.tasks[] | select(.status == "ok" and .tier == "cloud")] | length')
[ "$n" -gt 0 ] || fail "the speed rehearsal put nothing on the cloud"
[ "$(jqr '[.tasks[] | select(.status == "ok")] | length')" = 40 ] || fail "not every task is done"
[ "$(jqr .policy_errors)" = 0 ] || fail "policy errors"
pass "a rehearsal with speed puts $n of 40 tasks on the cloud"
