#!/usr/bin/env bash
# The monthly cap holds across two flowrun processes started at the same
# time on the same state directory; `flowrun spend` shows what the
# simulator served; a third run finds the month used up.
source "$(dirname "$0")/lib.bash"
start_sim --latency 30 --tps 0

words="w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 w20"
prompt_bytes=$(printf 'REPLY: %s' "$words" | wc -c)
worst=$(awk -v b="$prompt_bytes" 'BEGIN { printf "%.6f", ((b + 32) * 200 + 20 * 1000) / 1e6 }')
cap=$(awk -v w="$worst" 'BEGIN { printf "%.6f", w * 30 }')
for n in 1 2 3; do
  cat >"$WORK/flow$n.lua" <<LUA
workflow { name = "month$n", budget = { monthly_usd = $cap }, defaults = { max_tokens = 20 } }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "paid", max_parallel = 10,
                   price = { input = 200, output = 1000 } }
agent "a" {}
for i = 1, 60 do task("t" .. i) { agent = "a", prompt = "REPLY: $words" } end
LUA
done

"$FLOWRUN" "$WORK/flow1.lua" --state "$WORK/state" --out "$WORK/o1" --json >"$WORK/r1.json" 2>"$WORK/e1" &
p1=$!
"$FLOWRUN" "$WORK/flow2.lua" --state "$WORK/state" --out "$WORK/o2" --json >"$WORK/r2.json" 2>"$WORK/e2" &
p2=$!
set +e; wait $p1; rc1=$?; wait $p2; rc2=$?; set -e
[ "$rc1" = 3 ] || [ "$rc2" = 3 ] || fail "neither run was stopped by the cap ($rc1, $rc2)"
for rc in $rc1 $rc2; do [ "$rc" = 0 ] || [ "$rc" = 3 ] || { cat "$WORK/e1" "$WORK/e2" >&2; fail "exit code $rc"; }; done
served=$(sim_stats | jq '(.models.paid.input_tokens * 200 + .models.paid.output_tokens * 1000) / 1e6')
awk -v s="$served" -v c="$cap" 'BEGIN { exit !(s <= c + 1e-12) }' ||
  fail "two processes spent \$$served against a monthly cap of \$$cap"
ran=$(jq -s '[.[].tasks[] | select(.status == "ok")] | length' "$WORK/r1.json" "$WORK/r2.json")
pass "two processes at once: $ran tasks ran, \$$served of the \$$cap monthly cap"
# The month crossed 80% of its cap once, so one of the two runs alerted, with
# the month's figures.
awk -v s="$served" -v c="$cap" 'BEGIN { exit !(s >= 0.8 * c) }' || fail "the month did not reach 80%"
[ "$(jq -s '[.[].budget_alerts[] | select(.cap == "month")] | length' "$WORK/r1.json" "$WORK/r2.json")" = 1 ] ||
  fail "monthly alerts: $(jq -s -c '[.[].budget_alerts]' "$WORK/r1.json" "$WORK/r2.json")"
alert=$(jq -s -c '[.[].budget_alerts[] | select(.cap == "month")][0]' "$WORK/r1.json" "$WORK/r2.json")
awk -v a="$(echo "$alert" | jq .cap_usd)" -v c="$cap" 'BEGIN { d = a - c; exit !(d < 1e-9 && d > -1e-9) }' ||
  fail "the alert's cap: $alert"
awk -v a="$(echo "$alert" | jq .spent_usd)" -v c="$cap" -v s="$served" \
  'BEGIN { exit !(a >= 0.8 * c - 1e-9 && a <= s + 1e-9) }' || fail "the alert's spend: $alert"
pass "the two processes raised one monthly alert between them: $alert"

run_flowrun spend --state "$WORK/state" --json
expect_rc 0 "spend"
month=$(date -u +%Y-%m)
# Every task that ran is booked (a retried attempt is booked too).
[ "$(jqr ".months[] | select(.month == \"$month\") | .attempts")" -ge "$ran" ] || fail "spend attempts: $(cat "$WORK/stdout")"
awk -v a="$(jqr ".months[] | select(.month == \"$month\") | .cost_usd")" -v s="$served" \
  'BEGIN { d = a - s; exit !(d < 1e-9 && d > -1e-9) }' || fail "spend cost differs from the simulator's"
[ "$(jqr ".months[] | select(.month == \"$month\") | .by_workflow | keys | join(\",\")")" = "month1,month2" ] ||
  fail "by_workflow: $(jqr '.months[0].by_workflow')"
run_flowrun spend --state "$WORK/state"
expect_rc 0 "spend text"
grep -q "^$month: \\$" "$WORK/stdout" || fail "spend text: $(cat "$WORK/stdout")"
pass "flowrun spend shows the month, by workflow, equal to what the simulator served"

# The month is used up: a third run sends nothing to the paid endpoint.
before=$(sim_stats | jq .models.paid.requests)
run_flowrun "$WORK/flow3.lua" --state "$WORK/state" --out "$WORK/o3" --json
expect_rc 3 "third run"
[ "$(sim_stats | jq .models.paid.requests)" = "$before" ] || {
  # Only what still fits under the cap may run.
  after=$(sim_stats | jq '(.models.paid.input_tokens * 200 + .models.paid.output_tokens * 1000) / 1e6')
  awk -v s="$after" -v c="$cap" 'BEGIN { exit !(s <= c + 1e-12) }' || fail "the third run passed the cap"
}
jqr '[.tasks[] | select(.status == "budget")][0].reason' | grep -q "monthly cap" ||
  fail "reason: $(jqr '[.tasks[] | select(.status == "budget")][0].reason')"
pass "a third run finds the monthly cap used up and says so"
