#!/usr/bin/env bash
# A policy may return an endpoint by name (docs/policies.md). The self-check
# a policy passes at load and at every reload is made with the run's own
# endpoints, so `return "gpu"` loads and runs; a name that is not a
# candidate for a task costs that decision only: the built-in default
# decides it, the report counts it, the run goes on.
source "$(dirname "$0")/lib.bash"
start_sim --latency 20 --tps 0

endpoints() {
  echo "endpoint \"gpu\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"mg\", max_parallel = 2 }"
  echo "endpoint \"cpu\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"mc\", max_parallel = 2 }"
}

# 1. route returns "gpu": the policy loads, every task runs on gpu.
cat >"$WORK/gpu.lua" <<'LUA'
return { route = function(task, c) return "gpu" end }
LUA
{
  endpoints
  echo 'workflow { policy = "gpu.lua" }'
  echo 'agent "a" {}'
  for i in 1 2 3 4; do echo "task \"t$i\" { agent = \"a\", prompt = \"REPLY: r$i\" }"; done
} >"$WORK/flow.lua"
run_flowrun "$WORK/flow.lua" --out "$WORK/out" --json
expect_rc 0 "a policy returning \"gpu\""
[ "$(jqr '[.tasks[] | select(.status == "ok" and .endpoint == "gpu")] | length')" = 4 ] ||
  fail "not every task ran on gpu: $(jqr '[.tasks[] | .endpoint]')"
[ "$(jqr .policy_errors)" = 0 ] || fail "policy_errors $(jqr .policy_errors)"
[ "$(jqr '[.tasks[].decisions[] | select(.policy == "gpu")] | length')" = 4 ] ||
  fail "the policy did not make the decisions"
pass "route returning \"gpu\" loads and runs: 4 tasks on gpu, no policy error"

# 2. A name that is not a candidate for one task (pinned to cpu): that
# decision is the default's, the others are the policy's.
{
  endpoints
  echo 'workflow { policy = "gpu.lua" }'
  echo 'agent "a" {}'
  echo 'task "free1" { agent = "a", prompt = "REPLY: f1" }'
  echo 'task "free2" { agent = "a", prompt = "REPLY: f2" }'
  echo 'task "pinned" { agent = "a", endpoint = "cpu", prompt = "REPLY: p" }'
} >"$WORK/flow2.lua"
run_flowrun "$WORK/flow2.lua" --out "$WORK/out2" --json
expect_rc 0 "a name that is not a candidate for one task"
[ "$(jqr '.tasks[] | select(.name == "pinned") | .endpoint')" = cpu ] || fail "pinned endpoint"
[ "$(jqr '.tasks[] | select(.name == "pinned") | .decisions[0].policy')" = default ] ||
  fail "the pinned task's decision is not the default's"
[ "$(jqr '[.tasks[] | select(.name != "pinned") | .endpoint] | unique | join(",")')" = gpu ] ||
  fail "the other tasks left gpu"
[ "$(jqr .policy_errors)" = 1 ] || fail "policy_errors $(jqr .policy_errors), expected 1"
expect_stderr "not one of the candidates"
pass "a name that is not a candidate costs that decision only (the default decides, counted)"

# 3. A name that is none of the run's endpoints: the self-check does not
# refuse the policy; every decision is the default's, counted.
cat >"$WORK/nowhere.lua" <<'LUA'
return { route = function(task, c) return "nowhere" end }
LUA
run_flowrun "$WORK/flow.lua" --policy "$WORK/nowhere.lua" --no-cache --out "$WORK/out3" --json
expect_rc 0 "a policy returning an unknown name"
[ "$(jqr .policy_errors)" = 4 ] || fail "policy_errors $(jqr .policy_errors), expected 4"
[ "$(jqr '[.tasks[].decisions[] | select(.policy == "default")] | length')" = 4 ] ||
  fail "the default did not decide"
pass "an unknown name loads; each decision falls to the default and is counted"

# 4. A reload to a version returning "cpu" passes the self-check with the
# run's endpoints and is swapped in: the task that becomes ready after it
# runs on cpu. The first task waits on a slow model meanwhile.
SIM_PID_1=$SIM_PID
start_sim --latency 20 --tps 0 --model "slow:latency=3000"
mkdir -p "$WORK/p"
cp "$WORK/gpu.lua" "$WORK/p/live.lua"
{
  endpoints
  echo "endpoint \"slow\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"slow\" }"
  echo 'workflow { policy = "p/live.lua" }'
  echo 'agent "a" {}'
  echo 'task "gate" { agent = "a", endpoint = "slow", prompt = "REPLY: g" }'
  echo 'task "after" { agent = "a", deps = { "gate" }, prompt = "REPLY: a" }'
} >"$WORK/flow4.lua"
"$FLOWRUN" "$WORK/flow4.lua" --out "$WORK/out4" --json --log-level info >"$WORK/stdout" 2>"$WORK/stderr" &
pid=$!
dispatched() { grep -q "task=gate endpoint=slow .*dispatch" "$WORK/stderr"; }
reloaded() { grep -q "reload=" "$WORK/stderr"; }
wait_for dispatched
cat >"$WORK/p/live.lua.new" <<'LUA'
return { route = function(task, c) return "cpu" end }
LUA
mv "$WORK/p/live.lua.new" "$WORK/p/live.lua"
wait_for reloaded
set +e; wait "$pid"; RC=$?; set -e
kill "$SIM_PID_1" 2>/dev/null || true
expect_rc 0 "reload to a policy returning a name"
[ "$(jqr '.policy_reloads | map("\(.version):\(.ok)") | join(",")')" = "2:true" ] ||
  fail "the reload was refused: $(jqr .policy_reloads)"
[ "$(jqr '.tasks[] | select(.name == "after") | "\(.endpoint) \(.decisions[0].version)"')" = "cpu 2" ] ||
  fail "after: $(jqr '.tasks[] | select(.name == "after") | .decisions')"
pass "a reload to a policy that returns a name passes the self-check and decides"
