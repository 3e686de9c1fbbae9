#!/usr/bin/env bash
# Every class of invalid workflow exits 65, names the file and line, and
# sends nothing: the simulator its endpoints point at sees no connection.
source "$(dirname "$0")/lib.bash"
start_sim

n=0
for fixture in "$SRC"/tests/e2e/fixtures/invalid/*.lua; do
  name=$(basename "$fixture")
  expect=$(sed -n 's/^-- expect: //p' "$fixture")
  line=$(sed -n 's/^-- line: //p' "$fixture")
  sed "s#SIM_URL#$SIM_URL#" "$fixture" >"$WORK/$name"
  run_flowrun "$WORK/$name" --out "$WORK/out"
  expect_rc 65 "$name"
  expect_stderr "$WORK/$name:$line:"
  [ -z "$expect" ] || expect_stderr "$expect"
  n=$((n + 1))
  pass "$name: exit 65 at line $line${expect:+ with \"$expect\"}"
done
[ "$n" -ge 10 ] || fail "only $n fixtures ran"

# The cycle names every task on it, in order, and not the free task.
run_flowrun "$WORK/cycle.lua"
grep -E "dependency cycle: (a1 -> b1 -> c1 -> a1|b1 -> c1 -> a1 -> b1|c1 -> a1 -> b1 -> c1)" \
  "$WORK/stderr" >/dev/null || { cat "$WORK/stderr"; fail "cycle path"; }
pass "the cycle message lists the whole cycle"

[ ! -e /tmp/flowrun-sandbox-escaped ] || fail "os.execute ran"
[ "$(sim_stats | jq '[.models[].requests] | add // 0')" -eq 0 ] || fail "an invalid workflow sent a request"
[ "$(sim_stats | jq .connections)" -le 2 ] || fail "an invalid workflow connected to the endpoint"
pass "no request was sent for any invalid workflow"
