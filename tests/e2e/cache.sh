#!/usr/bin/env bash
# The result cache: a rerun reuses every finished task without a request or
# a cost; --no-cache and --fresh force new calls; a failed result is never
# cached. After kill -9 at 20 random moments of a 300-task run, each rerun
# finishes the rest only, its outputs are byte-identical to an uninterrupted
# run, and nothing finished is paid for twice.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0

cat >"$WORK/flow.lua" <<LUA
workflow { name = "cached" }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "c", max_parallel = 4,
                   price = { input = 1, output = 2 } }
agent "a" { system = "be brief" }
task "one" { agent = "a", prompt = "Say something." }
task "two" { agent = "a", deps = { "one" }, prompt = "Answer: {{one}}" }
task "three" { agent = "a", deps = { "one" }, prompt = "REPLY: three" }
LUA
requests() { sim_stats | jq '[.models[].requests] | add // 0'; }

run_flowrun "$WORK/flow.lua" --out "$WORK/first" --json
expect_rc 0 "first run"
first_cost=$(jqr .cost_usd)
[ "$(requests)" = 3 ] || fail "first run: $(requests) requests"
run_flowrun "$WORK/flow.lua" --out "$WORK/second" --json
expect_rc 0 "second run"
[ "$(requests)" = 3 ] || fail "the rerun sent $(( $(requests) - 3 )) requests"
[ "$(jqr '[.tasks[] | select(.cached)] | length')" = 3 ] || fail "not every task was cached"
[ "$(jqr .cost_usd)" = 0 ] || [ "$(jqr .cost_usd)" = 0.0 ] || fail "the rerun cost $(jqr .cost_usd)"
diff -r "$WORK/first" "$WORK/second" >/dev/null || fail "cached outputs differ"
[ "$(jqr '.tasks[0].decisions[0].outcome')" = cached ] || fail "decision outcome"
pass "a rerun reuses all 3 results: no request, no cost (first run \$$first_cost), same outputs"

run_flowrun "$WORK/flow.lua" --fresh two --out "$WORK/third" --json
expect_rc 0 "--fresh"
[ "$(requests)" = 4 ] || fail "--fresh two sent $(( $(requests) - 3 )) requests"
[ "$(jqr '.tasks[] | select(.name == "two") | .cached')" = false ] || fail "two was cached"
run_flowrun "$WORK/flow.lua" --no-cache --out "$WORK/fourth" --json
expect_rc 0 "--no-cache"
[ "$(requests)" = 7 ] || fail "--no-cache sent $(( $(requests) - 4 )) requests"
pass "--fresh TASK and --no-cache send new requests"

# A failed result is never cached: the rerun tries again.
cat >"$WORK/fails.lua" <<LUA
workflow { name = "fails", defaults = { retries = 0 } }
endpoint "e" { tier = "local", url = "$SIM_URL/v1", model = "f" }
agent "a" {}
task "bad" { agent = "a", prompt = "x\nFAULT: 500" }
LUA
run_flowrun "$WORK/fails.lua" --out "$WORK/f1" --json
expect_rc 1 "failing task"
before=$(requests)
run_flowrun "$WORK/fails.lua" --out "$WORK/f2" --json
expect_rc 1 "failing task again"
[ "$(requests)" = $((before + 1)) ] || fail "a failed result was reused"
pass "a failed result is never cached"

# kill -9 and resume. One endpoint, so the uninterrupted run is the same
# every time (the simulator's text depends on the model that answers).
kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""
start_sim --latency 20 --tps 0
cat >"$WORK/big.lua" <<LUA
workflow { name = "big" }
endpoint "b" { tier = "cloud", url = "$SIM_URL/v1", model = "mb", max_parallel = 16,
               price = { input = 1, output = 1 } }
agent "w" {}
for i = 1, 300 do
  local deps = {}
  if i > 20 then deps = { "t" .. (i - 20) } end
  task("t" .. i) { agent = "w", deps = deps, prompt = "Write item " .. i .. (i > 20 and ": {{t" .. (i - 20) .. "}}" or "") }
end
LUA
mkdir -p "$WORK/ref"
cp "$WORK/big.lua" "$WORK/ref/"
# Each run of the big workflow has its own state: the reference and each trial.
run_flowrun "$WORK/ref/big.lua" --out "$WORK/ref-out" --state "$WORK/ref/state" --json
expect_rc 0 "reference run"
ref_requests=$(requests)
[ "$ref_requests" = 300 ] || fail "reference: $ref_requests requests"
slots=16
for trial in $(seq 1 20); do
  dir="$WORK/trial$trial"
  mkdir -p "$dir"
  cp "$WORK/big.lua" "$dir/"
  curl -sf -X POST "$SIM_URL/sim/reset" >/dev/null
  at=$(( (RANDOM % 280) + 1 ))
  "$FLOWRUN" "$dir/big.lua" --out "$dir/killed" --state "$dir/state" --json >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 800); do
    [ "$(requests)" -ge "$at" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  sent_before=$(requests)
  run_flowrun "$dir/big.lua" --out "$dir/resumed" --state "$dir/state" --json
  expect_rc 0 "trial $trial rerun"
  diff -r "$WORK/ref-out" "$dir/resumed" >"$WORK/diff" || { head -5 "$WORK/diff"; fail "trial $trial: outputs differ from the uninterrupted run"; }
  total=$(requests)
  [ "$total" -le $((ref_requests + slots)) ] ||
    fail "trial $trial: $total requests in all (killed at $sent_before); at most 300 + $slots in flight"
  echo "   trial $trial: killed after $sent_before requests; rerun sent $((total - sent_before)); $(jqr '[.tasks[] | select(.cached)] | length') cached"
done
pass "20 kill -9 points: every rerun finished all 300 tasks with identical outputs, none paid twice"
