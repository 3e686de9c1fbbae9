#!/usr/bin/env bash
# A cap of $0 is a cap: with budget.usd = 0, a task's budget = 0,
# --budget 0 or monthly_usd = 0, no request reaches the priced cloud model (the simulator's own
# counters say so), free work (local, or a price of 0) runs and succeeds,
# the paid-only task ends with status budget and the run exits 3. The
# report's budget_usd is 0 then, and null without a cap. --budget takes a
# finite number >= 0 only.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0

# write_flow FILE WORKFLOW_BUDGET TASK_BUDGET: one local, one free cloud and
# one priced cloud endpoint; a task pinned to each, and one the policy may
# place anywhere (TASK_BUDGET goes to the last two).
write_flow() {
  cat >"$1" <<LUA
workflow { name = "zerocap" $2 }
endpoint "gpu" { tier = "local", url = "$SIM_URL/v1", model = "free", max_parallel = 2 }
endpoint "gratis" { tier = "cloud", url = "$SIM_URL/v1", model = "gratis",
                    price = { input = 0, output = 0 } }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "paid", quality = 0.95,
                   price = { input = 3, output = 15 } }
agent "a" {}
task "local" { agent = "a", tier = "local", prompt = "REPLY: local work" }
task "anywhere" { agent = "a", complexity = 0.9, prompt = "REPLY: placed anywhere" $3 }
task "free_cloud" { agent = "a", endpoint = "gratis", prompt = "REPLY: free cloud" }
task "paid" { agent = "a", endpoint = "cloud", prompt = "REPLY: paid work" $3 }
task "after_paid" { agent = "a", deps = { "paid" }, tier = "local", prompt = "REPLY: {{paid}}" }
LUA
}

paid_requests() { sim_requests paid; }
# budget_is VALUE: the report's budget_usd of the case just run.
budget_is() { [ "$(jqr '.budget_usd')" = "$1" ] || fail "$CASE: budget_usd $(jqr .budget_usd)"; }
# paid_reason_has TEXT: the paid task's reason holds TEXT.
paid_reason_has() {
  jqr '.tasks[] | select(.name == "paid") | .reason' | grep -qF -- "$1" ||
    fail "$CASE: reason $(jqr '.tasks[] | select(.name == "paid") | .reason')"
}

# check_zero_cap NAME: the run just made held a cap of $0.
check_zero_cap() {
  expect_rc 3 "$1"
  [ "$(paid_requests)" = 0 ] || fail "$1: $(paid_requests) request(s) reached the priced cloud model"
  [ "$(jqr .status)" = budget ] || fail "$1: run status $(jqr .status)"
  for t in local anywhere free_cloud; do
    [ "$(jqr ".tasks[] | select(.name == \"$t\") | .status")" = ok ] ||
      fail "$1: free task $t: $(jqr ".tasks[] | select(.name == \"$t\") | [.status, .reason] | join(\": \")")"
  done
  [ "$(jqr '.tasks[] | select(.name == "anywhere") | .endpoint')" != cloud ] || fail "$1: anywhere ran on cloud"
  [ "$(jqr '.tasks[] | select(.name == "paid") | .status')" = budget ] ||
    fail "$1: paid task: $(jqr '.tasks[] | select(.name == "paid") | .status')"
  [ "$(jqr '.tasks[] | select(.name == "after_paid") | .status')" = skipped ] || fail "$1: dependent not skipped"
  [ "$(jqr .cost_usd)" = 0 ] || fail "$1: cost $(jqr .cost_usd)"
}

n=0
# run_case NAME WORKFLOW_BUDGET PAID_TASK_BUDGET [flowrun options...]
run_case() {
  n=$((n + 1))
  write_flow "$WORK/flow$n.lua" "$2" "$3"
  local name=$1
  shift 3
  curl -sf -X POST "$SIM_URL/sim/reset" >/dev/null
  run_flowrun "$WORK/flow$n.lua" --state "$WORK/state$n" --out "$WORK/out$n" --json "$@"
  CASE=$name
}

run_case "workflow budget.usd = 0" ", budget = { usd = 0 }" ""
check_zero_cap "$CASE"
budget_is 0
paid_reason_has 'run cap ($0;'
pass "$CASE: nothing paid was sent, free work ran, the paid task ended budget, exit 3"

run_case "task budget = 0" "" ", budget = 0"
check_zero_cap "$CASE"
budget_is null
paid_reason_has "task's cap (\$0;"
pass "$CASE: nothing paid was sent, budget_usd is null (no run cap), exit 3"

run_case "--budget 0" "" "" --budget 0
check_zero_cap "$CASE"
budget_is 0
pass "$CASE: nothing paid was sent, budget_usd is 0, exit 3"

run_case "--budget 0 over a workflow's cap" ", budget = { usd = 5 }" "" --budget 0
check_zero_cap "$CASE"
pass "$CASE: the option's cap of 0 wins"

run_case "monthly_usd = 0" ", budget = { monthly_usd = 0 }" ""
check_zero_cap "$CASE"
budget_is null
paid_reason_has 'monthly cap ($0; $0 spent this month)'
pass "$CASE: a monthly cap of 0 lets only free work run"

run_case "--budget 1 over a workflow's cap of 0" ", budget = { usd = 0 }" "" --budget 1
expect_rc 0 "$CASE"
[ "$(paid_requests)" -ge 1 ] && [ "$(jqr '.tasks[] | select(.name == "paid") | .status')" = ok ] ||
  fail "$CASE: $(paid_requests) paid requests, paid task $(jqr '.tasks[] | select(.name == "paid") | .status')"
budget_is 1
pass "$CASE: the option's cap wins"

run_case "no cap" "" ""
expect_rc 0 "$CASE"
[ "$(paid_requests)" -ge 1 ] && [ "$(jqr '.tasks[] | select(.name == "paid") | .status')" = ok ] ||
  fail "$CASE: $(paid_requests) paid requests, paid task $(jqr '.tasks[] | select(.name == "paid") | .status')"
[ "$(jqr 'has("budget_usd")')" = true ] && [ "$(jqr '.budget_usd')" = null ] ||
  fail "$CASE: budget_usd $(jqr .budget_usd)"
pass "$CASE: the paid task ran and budget_usd is null"

before=$(paid_requests)
for bad in nan inf -inf -1 -0.5 abc ""; do
  run_flowrun "$WORK/flow1.lua" --state "$WORK/state-bad" --budget "$bad"
  expect_rc 2 "--budget '$bad'"
  expect_stderr "--budget"
done
[ "$(paid_requests)" = "$before" ] || fail "a refused option sent something"
pass "--budget nan, inf, negative and empty values are usage errors (exit 2) naming the option"
