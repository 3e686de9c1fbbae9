#!/usr/bin/env bash
# Failures: a dead endpoint fails its task after retries, dependents are
# skipped with the reason, independent branches finish; 429s are retried
# after Retry-After; private work never goes to the cloud.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0 --model busy:latency=300,tps=0,max=1

# A port with nothing listening.
dead_port=$(( (RANDOM % 1000) + 20000 ))
while (exec 3<>/dev/tcp/127.0.0.1/$dead_port) 2>/dev/null; do dead_port=$((dead_port + 1)); done

cat >"$WORK/fail.lua" <<LUA
endpoint "dead" { tier = "local", url = "http://127.0.0.1:$dead_port/v1", model = "x",
                  max_parallel = 1, timeouts = { connect = 2 } }
endpoint "ok" { tier = "local", url = "$SIM_URL/v1", model = "fine", max_parallel = 2 }
agent "a" {}
workflow { defaults = { retries = 1 } }
task "broken" { agent = "a", endpoint = "dead", prompt = "REPLY: never" }
task "after" { agent = "a", deps = { "broken" }, endpoint = "ok", prompt = "REPLY: {{broken}}" }
task "later" { agent = "a", deps = { "after" }, endpoint = "ok", prompt = "REPLY: {{after}}" }
task "independent" { agent = "a", endpoint = "ok", prompt = "REPLY: still here" }
LUA
run_flowrun "$WORK/fail.lua" --out "$WORK/out" --json
expect_rc 1 "a failed task"
[ "$(jqr '.tasks[] | select(.name=="broken") | .status')" = failed ] || fail "broken status"
[ "$(jqr '.tasks[] | select(.name=="broken") | .attempts')" = 2 ] || fail "retries: $(jqr '.tasks[] | select(.name=="broken") | .attempts')"
jqr '.tasks[] | select(.name=="broken") | .reason' | grep -q "dead" || fail "broken reason"
[ "$(jqr '.tasks[] | select(.name=="after") | .status')" = skipped ] || fail "after status"
[ "$(jqr '.tasks[] | select(.name=="after") | .reason')" = "dependency 'broken' did not succeed" ] || fail "after reason"
[ "$(jqr '.tasks[] | select(.name=="later") | .status')" = skipped ] || fail "later status"
[ "$(jqr '.tasks[] | select(.name=="independent") | .status')" = ok ] || fail "independent"
[ "$(cat "$WORK/out/independent.txt")" = "still here" ] || fail "independent output"
[ "$(jqr .status)" = failed ] || fail "run status"
pass "a dead endpoint fails its task after retries; dependents skipped; the rest finishes"

# The simulator allows 1 request at a time for "busy"; flowrun sends 3 and
# must absorb the 429s by retrying after Retry-After.
cat >"$WORK/busy.lua" <<LUA
endpoint "busy" { tier = "local", url = "$SIM_URL/v1", model = "busy", max_parallel = 3 }
agent "a" {}
workflow { defaults = { retries = 5 } }
task "b1" { agent = "a", prompt = "REPLY: one" }
task "b2" { agent = "a", prompt = "REPLY: two" }
task "b3" { agent = "a", prompt = "REPLY: three" }
LUA
run_flowrun "$WORK/busy.lua" --out "$WORK/out2" --json
expect_rc 0 "429 retried"
[ "$(sim_stats | jq .models.busy.rejected)" -ge 1 ] || fail "the sim never said 429"
[ "$(cat "$WORK/out2/b3.txt")" = three ] || fail "b3 output"
pass "429 with Retry-After is retried until it succeeds"

# Private work never leaves the local tier, whatever the policy says.
cat >"$WORK/always-cloud.lua" <<'LUA'
return { route = function(task, candidates, run)
  for _, c in ipairs(candidates) do if c.tier == "cloud" then return c end end
  return candidates[1]
end }
LUA
cat >"$WORK/private.lua" <<LUA
endpoint "local" { tier = "local", url = "$SIM_URL/v1", model = "local-m", max_parallel = 1 }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "cloud-m", max_parallel = 4 }
agent "a" {}
task "secret" { agent = "a", private = true, prompt = "REPLY: classified" }
task "public" { agent = "a", prompt = "REPLY: open" }
LUA
run_flowrun "$WORK/private.lua" --policy "$WORK/always-cloud.lua" --out "$WORK/out3" --json
expect_rc 0 "private run"
[ "$(jqr '.tasks[] | select(.name=="secret") | .tier')" = local ] || fail "secret left the local tier"
[ "$(jqr '.tasks[] | select(.name=="public") | .tier')" = cloud ] || fail "the policy was not followed"
[ "$(sim_stats | jq '.models."cloud-m".requests')" -eq 1 ] || fail "cloud saw more than the public task"
pass "a private task stays local even when the policy prefers the cloud"

cat >"$WORK/private-nolocal.lua" <<LUA
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "cloud-m", max_parallel = 4 }
agent "a" {}
task "secret" { agent = "a", private = true, prompt = "REPLY: classified" }
task "public" { agent = "a", prompt = "REPLY: open" }
LUA
run_flowrun "$WORK/private-nolocal.lua" --out "$WORK/out4" --json
expect_rc 1 "private without local"
[ "$(jqr '.tasks[] | select(.name=="secret") | .status')" = failed ] || fail "secret status"
jqr '.tasks[] | select(.name=="secret") | .reason' | grep -q "no usable local endpoint" || fail "secret reason"
[ "$(jqr '.tasks[] | select(.name=="public") | .status')" = ok ] || fail "public status"
pass "a private task with no local endpoint fails with a clear reason"
