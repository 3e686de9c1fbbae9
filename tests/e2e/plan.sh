#!/usr/bin/env bash
# flowrun plan sends nothing, and on every example it gives each task the
# endpoint a --sim run with the same latencies then gives it.
source "$(dirname "$0")/lib.bash"
start_sim

for wf in "$SRC"/workflows/*.lua; do
  # A workflow with an MCP server needs its server where the file says
  # (agents.lua: under the repository): examples.sh runs it in place.
  grep -q '^mcp "' "$wf" && continue
  name=$(basename "$wf" .lua)
  mkdir "$WORK/wf-$name" && cp "$SRC"/workflows/*.lua "$WORK/wf-$name/" # committed files only
  before=$(find "$WORK/wf-$name" | sort)
  run_flowrun plan "$WORK/wf-$name/$name.lua" --sim-latency 40 --sim-tps 0 --json
  expect_rc 0 "plan $name"
  cp "$WORK/stdout" "$WORK/plan-$name.json"
  [ "$(jq -r .status "$WORK/plan-$name.json")" = planned ] || fail "$name: plan status"
  [ "$(jq -r .plan "$WORK/plan-$name.json")" = true ] || fail "$name: plan flag"
  [ "$(find "$WORK/wf-$name" | sort)" = "$before" ] || fail "$name: the plan wrote files"
  [ ! -e "$WORK/.flowrun" ] || fail "$name: the plan made an output directory"
  jq -e '.worst_case_usd >= .cost_usd and .makespan_ms > 0' "$WORK/plan-$name.json" >/dev/null ||
    fail "$name: plan figures"
  # A checkpoint is answered in advance: a scripted run waits for no one.
  approve=()
  grep -q 'approve = true' "$wf" && approve=(--approve-all)
  # Its own state, so no run's rehearsal ledger is in the next plan's way.
  run_flowrun "$WORK/wf-$name/$name.lua" --sim --sim-latency 40 --sim-tps 0 --out "$WORK/out-$name" \
    --state "$WORK/state-$name" --json "${approve[@]}"
  expect_rc 0 "run $name"
  # A fan-out's instances are known only once its list is: the plan's are
  # estimates (plan_items), so the declared tasks are compared.
  planned=$(jq -r '[.tasks[] | select(.instance_of == null) | "\(.name)=\(.endpoint)"] | join(" ")' "$WORK/plan-$name.json")
  ran=$(jqr '[.tasks[] | select(.instance_of == null) | "\(.name)=\(.endpoint)"] | join(" ")')
  [ "$planned" = "$ran" ] || fail "$name: plan [$planned] but the run [$ran]"
  pass "$name: the plan's endpoints are the run's ($planned)"
done

# The text plan lists levels, endpoints and the cost lines; nothing reaches
# an endpoint (the workflow points at the simulator, which sees nothing).
cat >"$WORK/p.lua" <<LUA
endpoint "e" { tier = "local", url = "$SIM_URL/v1", model = "m", max_parallel = 1 }
endpoint "c" { tier = "cloud", url = "$SIM_URL/v1", model = "c", api_key_env = "UNSET_PLAN_KEY",
               price = { input = 1, output = 2 } }
baseline "c"
agent "a" {}
task "x" { agent = "a", prompt = "hello" }
task "y" { agent = "a", deps = { "x" }, prompt = "{{x}}" }
LUA
run_flowrun plan "$WORK/p.lua"
expect_rc 0 "text plan"
grep -q "makespan estimate" "$WORK/stdout" || fail "no makespan line"
grep -q "worst case" "$WORK/stdout" || fail "no worst case"
grep -q "baseline c" "$WORK/stdout" || fail "no baseline"
grep -qE "^ +1  y " "$WORK/stdout" || fail "y is not on level 1: $(cat "$WORK/stdout")"
[ "$(sim_stats | jq '[.models[].requests] | add // 0')" = 0 ] || fail "the plan sent a request"
pass "the text plan shows levels, makespan, costs and baseline, and sends nothing"
