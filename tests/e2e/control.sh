#!/usr/bin/env bash
# Control: a task timeout cancels a slow request; SIGINT cancels the run with
# exit 130 and keeps what finished; a broken policy costs only its decisions.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0 --model slow:latency=30000,tps=0

# A task timeout fails the task, its dependents are skipped, the rest finishes.
cat >"$WORK/timeout.lua" <<LUA
endpoint "slow" { tier = "local", url = "$SIM_URL/v1", model = "slow", max_parallel = 2 }
endpoint "fast" { tier = "local", url = "$SIM_URL/v1", model = "fast", max_parallel = 2 }
agent "a" {}
task "stuck" { agent = "a", endpoint = "slow", timeout = 0.3, prompt = "REPLY: late" }
task "after" { agent = "a", endpoint = "fast", deps = { "stuck" }, prompt = "REPLY: {{stuck}}" }
task "quick" { agent = "a", endpoint = "fast", prompt = "REPLY: quick" }
LUA
run_flowrun "$WORK/timeout.lua" --out "$WORK/out1" --json
expect_rc 1 "task timeout"
[ "$(jqr '.tasks[] | select(.name=="stuck") | .status')" = failed ] || fail "stuck status"
jqr '.tasks[] | select(.name=="stuck") | .reason' | grep -q "timed out after 0.3 s" || fail "stuck reason: $(jqr '.tasks[0].reason')"
[ "$(jqr '.tasks[] | select(.name=="after") | .status')" = skipped ] || fail "after status"
[ "$(cat "$WORK/out1/quick.txt")" = quick ] || fail "quick output"
in_flight_is slow 0 || fail "the slow request was not cancelled"
pass "a task timeout cancels its request, fails the task and skips its dependents"

# SIGINT: running requests are cancelled, finished outputs are kept, exit 130.
cat >"$WORK/interrupt.lua" <<LUA
endpoint "slow" { tier = "local", url = "$SIM_URL/v1", model = "slow", max_parallel = 2 }
endpoint "fast" { tier = "local", url = "$SIM_URL/v1", model = "fast", max_parallel = 2 }
agent "a" {}
task "done_first" { agent = "a", endpoint = "fast", prompt = "REPLY: kept" }
task "hang1" { agent = "a", endpoint = "slow", deps = { "done_first" }, prompt = "REPLY: x" }
task "hang2" { agent = "a", endpoint = "slow", deps = { "done_first" }, prompt = "REPLY: y" }
LUA
curl -sf -X POST "$SIM_URL/sim/reset" >/dev/null
"$FLOWRUN" "$WORK/interrupt.lua" --out "$WORK/out2" --json >"$WORK/stdout" 2>"$WORK/stderr" &
pid=$!
wait_for in_flight_at_least slow 2 # the slow tasks have started
kill -INT "$pid"
set +e; wait "$pid"; RC=$?; set -e
expect_rc 130 "SIGINT"
[ "$(jqr .status)" = interrupted ] || fail "report status $(jqr .status)"
[ "$(jqr '.tasks[] | select(.name=="hang1") | .status')" = cancelled ] || fail "hang1 status"
[ "$(cat "$WORK/out2/done_first.txt")" = kept ] || fail "finished output lost"
wait_for in_flight_is slow 0 # no request left open
pass "SIGINT cancels running requests, keeps finished outputs and exits 130"

# A policy that errors on some tasks: the default decides those, the run
# finishes, the report counts them and says who decided.
cat >"$WORK/flaky.lua" <<'LUA'
return { route = function(task, candidates, run)
  if task.name:find("odd") then error("cannot route " .. task.name) end
  if task.name == "bogus" then return "no-such-endpoint" end
  return candidates[1]
end }
LUA
cat >"$WORK/policy.lua" <<LUA
endpoint "fast" { tier = "local", url = "$SIM_URL/v1", model = "fast", max_parallel = 2 }
agent "a" {}
task "even1" { agent = "a", prompt = "REPLY: e1" }
task "odd1" { agent = "a", prompt = "REPLY: o1" }
task "odd2" { agent = "a", prompt = "REPLY: o2" }
task "bogus" { agent = "a", prompt = "REPLY: b" }
LUA
run_flowrun "$WORK/policy.lua" --policy "$WORK/flaky.lua" --out "$WORK/out3" --json
expect_rc 0 "broken policy"
[ "$(jqr .policy_errors)" = 3 ] || fail "policy_errors $(jqr .policy_errors)"
[ "$(jqr '.tasks[] | select(.name=="odd1") | .decisions[0].policy')" = default ] || fail "odd1 decided by"
[ "$(jqr '.tasks[] | select(.name=="even1") | .decisions[0].policy')" = flaky ] || fail "even1 decided by"
[ "$(grep -c "cannot route" "$WORK/stderr")" -eq 1 ] || fail "one failing line of the policy was logged more than once"
expect_stderr "flaky.lua:2:"
expect_stderr "not one of the candidates"
pass "a failing policy costs only its decisions; the error is logged once with file:line"

# A policy that keeps a task waiting while nothing else runs refuses it: the
# task fails with that reason instead of stalling the run, and local-only
# never lets it reach the cloud.
cat >"$WORK/localonly.lua" <<LUA
endpoint "l" { tier = "local", url = "$SIM_URL/v1", model = "lo-local" }
endpoint "c" { tier = "cloud", url = "$SIM_URL/v1", model = "lo-cloud" }
agent "a" {}
task "cloud_pinned" { agent = "a", tier = "cloud", prompt = "REPLY: x" }
task "routine" { agent = "a", prompt = "REPLY: y" }
LUA
run_flowrun "$WORK/localonly.lua" --policy local-only --out "$WORK/out4" --json
expect_rc 1 "local-only with a cloud-only task"
[ "$(jqr '.tasks[] | select(.name=="cloud_pinned") | .status')" = failed ] || fail "cloud_pinned status"
jqr '.tasks[] | select(.name=="cloud_pinned") | .reason' | grep -q "local-only keeps the task waiting" || fail "reason"
[ "$(jqr '.tasks[] | select(.name=="routine") | .endpoint')" = l ] || fail "routine endpoint"
[ "$(curl -sf "$SIM_URL/sim/stats" | jq '.models."lo-cloud".requests // 0')" = 0 ] || fail "local-only reached the cloud"
pass "a task the policy never accepts fails with the reason; local-only never reaches the cloud"

# SIGTERM exits 143; a second signal ends the run at once.
cat >"$WORK/term.lua" <<LUA
endpoint "slow" { tier = "local", url = "$SIM_URL/v1", model = "slow", max_parallel = 2 }
agent "a" {}
task "hang1" { agent = "a", prompt = "REPLY: x" }
LUA
curl -sf -X POST "$SIM_URL/sim/reset" >/dev/null
"$FLOWRUN" "$WORK/term.lua" --out "$WORK/out5" --json >"$WORK/stdout" 2>"$WORK/stderr" &
pid=$!
wait_for in_flight_at_least slow 1 # hang1 has started
kill -TERM "$pid"
set +e; wait "$pid"; RC=$?; set -e
expect_rc 143 "SIGTERM"
[ "$(jqr .status)" = interrupted ] || fail "SIGTERM status"
[ "$(jqr '.tasks[] | select(.name=="hang1") | .status')" = cancelled ] || fail "SIGTERM: hang1 status"
pass "SIGTERM cancels the run and exits 143"

# A second signal ends the process at once, even while the first one's
# shutdown is still draining.
"$FLOWRUN" "$WORK/term.lua" --no-cache --out "$WORK/out6" >/dev/null 2>&1 &
pid=$!
wait_for in_flight_at_least slow 1 # hang1 has started
kill -INT "$pid"; kill -INT "$pid" 2>/dev/null || true
set +e; wait "$pid"; RC=$?; set -e
[ "$RC" = 130 ] || fail "two SIGINTs: exit $RC"
pass "two SIGINTs in a row end the run with exit 130: no hang, no crash"

# An endpoint's attempt timeout cuts one attempt, by name, and the attempt
# is retried.
cat >"$WORK/attempt.lua" <<LUA
workflow { defaults = { retries = 1 } }
endpoint "slow" { tier = "local", url = "$SIM_URL/v1", model = "slow", timeouts = { attempt = 0.3 } }
agent "a" {}
task "t" { agent = "a", prompt = "REPLY: late" }
LUA
run_flowrun "$WORK/attempt.lua" --no-cache --out "$WORK/out7" --json
expect_rc 1 "attempt timeout"
[ "$(jqr '.tasks[0].attempts')" = 2 ] || fail "attempts $(jqr '.tasks[0].attempts')"
jqr '.tasks[0].reason' | grep -q "attempt timeout: no complete reply after 0.3 s" || fail "reason $(jqr '.tasks[0].reason')"
pass "the attempt timeout fails an attempt by name, and it is retried"
