#!/usr/bin/env bash
# A cap is a cap even when fifty requests start at once: 100 tasks ready
# together against a cloud endpoint with max_parallel = 50 and a run cap that
# allows about a third of them. The simulator's own usage counts x prices
# never exceed the cap, the tasks that fit ran, the rest end with status
# budget, local work goes on, and the run exits 3. Repeated at 20 latencies.
source "$(dirname "$0")/lib.bash"

# Every reply is exactly 20 words, so a task costs close to its worst case.
words="w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 w20"
{
  echo 'workflow { budget = { usd = CAP, alert = 0.5 }, defaults = { max_tokens = 20 } }'
  echo 'endpoint "cloud" { tier = "cloud", url = "SIM_URL/v1", model = "paid", max_parallel = 50,'
  echo '                   price = { input = 200, output = 1000 } }'
  echo 'endpoint "gpu" { tier = "local", url = "SIM_URL/v1", model = "free", max_parallel = 4 }'
  echo 'agent "a" {}'
  echo "for i = 1, 100 do task(\"t\" .. i) { agent = \"a\", tier = \"cloud\", prompt = \"REPLY: $words\" } end"
  echo "for i = 1, 5 do task(\"local\" .. i) { agent = \"a\", tier = \"local\", prompt = \"REPLY: local \" .. i } end"
} >"$WORK/template.lua"

# The worst case of one task: at most one input token per prompt byte plus
# 32 for the chat template, and max_tokens out.
prompt_bytes=$(printf 'REPLY: %s' "$words" | wc -c)
worst=$(awk -v b="$prompt_bytes" 'BEGIN { printf "%.6f", ((b + 32) * 200 + 20 * 1000) / 1e6 }')
cap=$(awk -v w="$worst" 'BEGIN { printf "%.6f", w * 34 }')

for round in $(seq 1 20); do
  latency=$(( (round * 37) % 90 + 1 ))
  tps=$(( round % 3 == 0 ? 0 : round * 50 ))
  start_sim --latency "$latency" --tps "$tps"
  sed -e "s#SIM_URL#$SIM_URL#" -e "s#CAP#$cap#" "$WORK/template.lua" >"$WORK/flow.lua"
  run_flowrun "$WORK/flow.lua" --state "$WORK/state-$round" --out "$WORK/out-$round" --json
  expect_rc 3 "round $round"
  stats=$(sim_stats)
  spent=$(echo "$stats" | jq '(.models.paid.input_tokens * 200 + .models.paid.output_tokens * 1000) / 1e6')
  awk -v s="$spent" -v c="$cap" 'BEGIN { exit !(s <= c + 1e-12) }' ||
    fail "round $round: the simulator served \$$spent against a cap of \$$cap"
  ok=$(jqr '[.tasks[] | select(.status == "ok" and .tier == "cloud")] | length')
  over=$(jqr '[.tasks[] | select(.status == "budget")] | length')
  [ $((ok + over)) -eq 100 ] || fail "round $round: $ok ran, $over refused, of 100"
  [ "$ok" -ge 30 ] && [ "$over" -ge 30 ] || fail "round $round: $ok ran and $over were refused"
  [ "$ok" = "$(echo "$stats" | jq .models.paid.requests)" ] || fail "round $round: requests != tasks run"
  awk -v a="$(jqr .cost_usd)" -v s="$spent" 'BEGIN { d = a - s; exit !(d < 1e-9 && d > -1e-9) }' ||
    fail "round $round: the report says \$$(jqr .cost_usd), the simulator \$$spent"
  [ "$(jqr '[.tasks[] | select(.name | startswith("local")) | .status] | unique | join(",")')" = ok ] ||
    fail "round $round: local work did not go on"
  jqr '[.tasks[] | select(.status == "budget")][0].reason' | grep -q "does not fit the run cap" ||
    fail "round $round: reason $(jqr '[.tasks[] | select(.status == "budget")][0].reason')"
  [ "$(jqr .status)" = budget ] || fail "round $round: run status $(jqr .status)"
  [ "$(jqr '.budget_alerts | length')" = 1 ] || fail "round $round: alerts $(jqr .budget_alerts)"
  [ -s "$WORK/out-$round/t1.txt" ] || ls "$WORK/out-$round" | grep -q '^t' || fail "round $round: outputs lost"
  kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""
  echo "   round $round (latency $latency ms, $tps tok/s): $ok ran, $over refused, \$$spent of \$$cap"
done
pass "20 rounds: spend never passed the cap; the rest ended with budget; local work went on; exit 3"
