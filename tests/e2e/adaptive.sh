#!/usr/bin/env bash
# The adaptive policy on one state store, run after run: a first run's
# attempts (pinned to a local model whose declared quality is too low for
# the work, but which passes it) are the record the second run's decisions
# read: adaptive then keeps that work local where cost, reading only the
# declarations, sends it to the cloud. A reply that fails the gate still
# escalates to a stronger endpoint, a private task stays local, and every
# decision carries its explanation (--explain).
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0 --model gpu:skill=0.9 --model api:skill=1

# wf NAME N PIN: a workflow of N tasks of type code at complexity 0.5 that
# gpu passes (difficulty 0.5), each pinned by PIN (may be empty).
wf() {
  cat <<LUA
workflow { policy = "adaptive" }
endpoint "gpu" { tier = "local", url = "$SIM_URL/v1", model = "gpu", max_parallel = 16, quality = 0.3 }
endpoint "api" { tier = "cloud", url = "$SIM_URL/v1", model = "api", max_parallel = 16, quality = 0.95,
                 price = { input = 1, output = 2 } }
agent "coder" { type = "code" }
local function passed(text)
  if text:sub(1, 5) == "PASS " then return 1 end
  return false, "the reply does not pass"
end
for i = 1, $2 do
  task("$1" .. i) { agent = "coder", complexity = 0.5, check = passed, $3
    prompt = "$1 " .. i .. "\n@@difficulty 0.5" }
end
LUA
}

# Run 1: every task pinned to gpu, which passes them all: 12 passes of type
# code, complexity 0.4-0.6, in the store.
wf warm 12 'endpoint = "gpu",' >"$WORK/warm.lua"
run_flowrun "$WORK/warm.lua" --state "$WORK/st" --json --seed 1
expect_rc 0 "the first run"
[ "$(jqr '[.tasks[] | select(.endpoint == "gpu" and .status == "ok")] | length')" = 12 ] ||
  fail "the first run's tasks did not all pass on gpu"

# Run 2 with cost, on a store of its own with the same record: the
# declarations alone say gpu (0.3) is too weak for 0.5: the cloud.
wf work 8 '' >"$WORK/work.lua"
cp -r "$WORK/st" "$WORK/st-cost"
run_flowrun "$WORK/work.lua" --state "$WORK/st-cost" --json --policy cost
expect_rc 0 "cost"
[ "$(jqr '[.tasks[] | select(.endpoint == "api")] | length')" = 8 ] || fail "cost kept work local"

# Run 2 with adaptive: the record says gpu passes such tasks: all local,
# nothing spent, each decision explained from the record.
run_flowrun "$WORK/work.lua" --state "$WORK/st" --json --seed 1 --explain
expect_rc 0 "adaptive"
[ "$(jqr '[.tasks[] | select(.endpoint == "gpu" and .status == "ok")] | length')" = 8 ] ||
  fail "adaptive did not keep the work on gpu: $(jqr '[.tasks[].endpoint] | join(",")')"
[ "$(jqr .cost_usd)" = 0 ] || fail "adaptive spent $(jqr .cost_usd)"
grep -Eq 'gpu: p\(pass\) 0\.9[0-9] from [0-9]+ attempts of type code, complexity 0\.4-0\.6' \
  "$WORK/stdout" "$WORK/stderr" || fail "no explanation from the record in --explain"
pass "a second run on the store keeps on gpu what the first run's record says it passes (cost: the cloud), explained"

# A task gpu fails (difficulty 0.95): the gate fails it, and the retry goes
# to the stronger endpoint. A private one never leaves gpu.
cat >>"$WORK/work.lua" <<'LUA'
task "hard" { agent = "coder", complexity = 0.5, check = passed, prompt = "hard\n@@difficulty 0.95" }
task "secret" { agent = "coder", complexity = 0.5, check = passed, private = true,
                prompt = "secret\n@@difficulty 0.5" }
LUA
run_flowrun "$WORK/work.lua" --state "$WORK/st" --json --seed 2
expect_rc 0 "escalation"
[ "$(jqr '.tasks[] | select(.name == "hard") | [.decisions[] | "\(.endpoint):\(.outcome)"] | join(",")')" = "gpu:quality,api:ok" ] ||
  fail "hard: $(jqr '.tasks[] | select(.name == "hard") | .decisions')"
[ "$(jqr '.tasks[] | select(.name == "secret") | .endpoint')" = gpu ] || fail "the private task left gpu"
pass "a quality failure escalates to the stronger endpoint; a private task stays local"
