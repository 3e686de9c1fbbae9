#!/usr/bin/env bash
# The monthly alert and the monthly refusal quote the month, read from the
# ledger every run on one --state directory shares: with monthly_usd = 0.06
# and alert = 0.5 the alert fires once, in the run whose spend takes the
# month's total across $0.03, with the month's cap and the month's spend;
# a run that starts below the threshold and stays below it, and a run that
# starts above it, do not alert. A request that does not fit what is left
# of the month is refused with the month's cap and the month's spend.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0

# Input is free, and every reply is nine words at $1000 per million output
# tokens: each task costs exactly $0.009; its worst case (20 tokens) $0.02.
words="w1 w2 w3 w4 w5 w6 w7 w8 w9"
write_flow() { # FILE NAME TASKS
  cat >"$1" <<LUA
workflow { name = "$2", budget = { monthly_usd = 0.06, alert = 0.5 },
           defaults = { max_tokens = 20 } }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "paid", max_parallel = 1,
                   price = { input = 0, output = 1000 } }
agent "a" {}
for i = 1, $3 do task("t" .. i) { agent = "a", prompt = "run $2, task " .. i .. "\\nREPLY: $words" } end
LUA
}
month=$(date -u +%Y-%m)
month_spend() {
  "$FLOWRUN" spend --state "$WORK/state" --json | jq ".months[] | select(.month == \"$month\") | .cost_usd"
}
served() { sim_stats | jq '.models.paid.output_tokens * 1000 / 1e6'; }
near() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(d < 1e-9 && d > -1e-9) }'; }

# Run 1: two tasks, $0.018 of the month: below the threshold of $0.03.
write_flow "$WORK/one.lua" one 2
run_flowrun "$WORK/one.lua" --state "$WORK/state" --out "$WORK/o1" --json
expect_rc 0 "run 1"
near "$(month_spend)" 0.018 || fail "run 1: the month's spend is $(month_spend)"
[ "$(jqr '.budget_alerts | length')" = 0 ] || fail "run 1 alerted below the threshold: $(jqr .budget_alerts)"
! grep -q "alert" "$WORK/stderr" || fail "run 1 printed an alert: $(grep alert "$WORK/stderr")"
pass "run 1 spent \$0.018 of the month's \$0.06: no alert"

# Run 2: two more tasks take the month to $0.036: one alert.
write_flow "$WORK/two.lua" two 2
run_flowrun "$WORK/two.lua" --state "$WORK/state" --out "$WORK/o2" --json
expect_rc 0 "run 2"
near "$(month_spend)" 0.036 || fail "run 2: the month's spend is $(month_spend)"
near "$(month_spend)" "$(served)" || fail "the ledger says $(month_spend), the simulator $(served)"
[ "$(jqr '.budget_alerts | length')" = 1 ] || fail "run 2: alerts $(jqr .budget_alerts)"
[ "$(jqr '.budget_alerts[0].cap')" = month ] || fail "run 2: alert $(jqr .budget_alerts)"
near "$(jqr '.budget_alerts[0].cap_usd')" 0.06 || fail "run 2: the alert's cap is $(jqr '.budget_alerts[0].cap_usd')"
near "$(jqr '.budget_alerts[0].spent_usd')" 0.036 || fail "run 2: the alert's spend is $(jqr '.budget_alerts[0].spent_usd')"
near "$(jqr '.budget_alerts[0].fraction')" 0.5 || fail "run 2: fraction $(jqr '.budget_alerts[0].fraction')"
[ "$(grep -c 'alert' "$WORK/stderr")" = 1 ] || fail "run 2: $(grep -c alert "$WORK/stderr") alert lines"
expect_stderr 'alert: $0.0360 spent this month, 50% of the monthly cap of $0.06'
pass "run 2 took the month across \$0.03: one alert with the month's cap and spend"

# Run 3: the month was past the threshold before it started: no alert.
write_flow "$WORK/three.lua" three 1
run_flowrun "$WORK/three.lua" --state "$WORK/state" --out "$WORK/o3" --json
expect_rc 0 "run 3"
near "$(month_spend)" 0.045 || fail "run 3: the month's spend is $(month_spend)"
[ "$(jqr '.budget_alerts | length')" = 0 ] || fail "run 3 alerted again: $(jqr .budget_alerts)"
! grep -q "alert" "$WORK/stderr" || fail "run 3 printed an alert"
pass "run 3 started past the threshold: no second alert"

# Run 4: $0.015 is left of the month, a worst case of $0.02 does not fit.
before=$(sim_stats | jq .models.paid.requests)
write_flow "$WORK/four.lua" four 1
run_flowrun "$WORK/four.lua" --state "$WORK/state" --out "$WORK/o4" --json
expect_rc 3 "run 4"
[ "$(sim_stats | jq .models.paid.requests)" = "$before" ] || fail "run 4 sent a request past the month's cap"
reason=$(jqr '.tasks[0].reason')
case "$reason" in
  *"the worst case on 'cloud' (\$0.0200) does not fit the monthly cap (\$0.06; \$0.0450 spent this month"*) ;;
  *) fail "run 4: reason '$reason'" ;;
esac
pass "run 4 is refused with the month's figures: $reason"
