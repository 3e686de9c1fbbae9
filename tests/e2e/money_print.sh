#!/usr/bin/env bash
# Money is printed without hiding any: a cloud cost of $0.00002 reads as
# $0.00002 (never $0.0000) in the summary and in `flowrun spend`, and a cap
# of $0.035 reads as $0.035 (never $0.04), in the summary and in a refusal.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0

# Input is free and ten words out at $2 per million tokens: $0.00002.
cat >"$WORK/flow.lua" <<LUA
workflow { name = "pennies", budget = { usd = 0.035 }, defaults = { max_tokens = 20 } }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "paid",
                   price = { input = 0, output = 2 } }
endpoint "dear" { tier = "cloud", url = "$SIM_URL/v1", model = "dear",
                  price = { input = 0, output = 2000 } }
agent "a" {}
task "cheap" { agent = "a", endpoint = "cloud", prompt = "REPLY: a b c d e f g h i j" }
task "costly" { agent = "a", deps = { "cheap" }, endpoint = "dear", max_tokens = 20,
                prompt = "REPLY: x" }
LUA
run_flowrun "$WORK/flow.lua" --state "$WORK/state" --out "$WORK/out" --json
expect_rc 3 "run"
[ "$(sim_stats | jq .models.paid.output_tokens)" = 10 ] || fail "the simulator served $(sim_stats)"
awk -v c="$(jqr .cost_usd)" 'BEGIN { d = c - 0.00002; exit !(d < 1e-12 && d > -1e-12) }' ||
  fail "cost_usd $(jqr .cost_usd)"
grep -E '^cheap +ok .* \$0\.00002$' "$WORK/stderr" >/dev/null ||
  { cat "$WORK/stderr" >&2; fail "the task's cost is not shown as \$0.00002"; }
expect_stderr 'spend $0.00002 of $0.035 cap'
expect_stderr "costly: budget: the worst case on 'dear' (\$0.0400) does not fit the run cap (\$0.035; \$0.00002 spent)"
pass "the summary shows \$0.00002 spent of a \$0.035 cap, and the refusal quotes both as they are"

run_flowrun spend --state "$WORK/state"
expect_rc 0 "spend"
grep -qF "$(date -u +%Y-%m): \$0.00002 in 1 attempts" "$WORK/stdout" || fail "spend: $(cat "$WORK/stdout")"
grep -qF 'cloud $0.00002 (1)' "$WORK/stdout" || fail "spend groups: $(cat "$WORK/stdout")"
pass "flowrun spend shows \$0.00002"
