#!/usr/bin/env bash
# Every result passes the task's gates as they are now: a cached reply is
# checked against the task's current check and min_quality before it is
# reused, and one that fails is a quality failure (the policy escalates, a
# fresh request is made). A check that returns nothing says so.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0

cat >"$WORK/local-first.lua" <<'LUA'
return { route = function(task, candidates, run)
  for _, c in ipairs(candidates) do if c.name == "local" then return c end end
  return candidates[1]
end }
LUA
# write_flow CHECK [MIN_QUALITY]: one task, its check the Lua body CHECK.
write_flow() {
  cat >"$WORK/flow.lua" <<LUA
workflow { name = "gates" }
endpoint "local" { tier = "local", url = "$SIM_URL/v1", model = "local-m", max_parallel = 1 }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "cloud-m", max_parallel = 1,
                   price = { input = 1, output = 2 } }
agent "a" {}
task "t" { agent = "a", prompt = "Say something.", ${2:+min_quality = $2,}
           check = function(out) $1 end }
LUA
}
run() { run_flowrun "$WORK/flow.lua" --policy "$WORK/local-first.lua" --out "$WORK/out" --json; }

write_flow 'return true'
run
expect_rc 0 "first run"
[ "$(jqr '.tasks[0].endpoint')" = local ] || fail "first run on $(jqr '.tasks[0].endpoint')"
[ "$(sim_requests local-m)" = 1 ] || fail "first run: $(sim_requests local-m) requests"
run
[ "$(jqr '.tasks[0].cached')" = true ] || fail "an unchanged rerun was not served from the cache"
[ "$(sim_requests local-m)" = 1 ] || fail "the cached rerun sent a request"
pass "an unchanged task is served from the cache"

# The check now refuses the local model's text: the cached reply fails it,
# the policy is asked with reason "quality", and the cloud is asked.
write_flow 'if out:find("^cloud%-m") then return true end return false, "not from the cloud"'
run
expect_rc 0 "a new check that the cached reply fails"
[ "$(jqr '.tasks[0].cached')" = false ] || fail "the cached reply was reused past a failing check"
[ "$(jqr '.tasks[0].endpoint')" = cloud ] || fail "ended on $(jqr '.tasks[0].endpoint')"
[ "$(sim_requests local-m)" = 1 ] || fail "local was asked again"
[ "$(sim_requests cloud-m)" = 1 ] || fail "no fresh request to the cloud: $(sim_requests cloud-m)"
[ "$(jqr '.tasks[0].decisions[0].policy')" = cache ] || fail "decision 0: $(jqr '.tasks[0].decisions[0]')"
[ "$(jqr '.tasks[0].decisions[0].outcome')" = quality ] || fail "cache decision outcome"
jqr '.tasks[0].decisions[0].error' | grep -q "not from the cloud" || fail "cache decision error"
[ "$(jqr '.tasks[0].decisions[1].reason')" = quality ] || fail "the policy's reason"
pass "a cached reply that fails the current check is a quality failure: the policy escalates, a fresh request is made"

# A check that fails everything: the task fails with the check's reason.
write_flow 'return false, "too vague"'
run
expect_rc 1 "a check nothing passes"
[ "$(jqr '.tasks[0].status')" = failed ] || fail "status $(jqr '.tasks[0].status')"
jqr '.tasks[0].reason' | grep -q "too vague" || fail "reason: $(jqr '.tasks[0].reason')"
[ "$(jqr '.tasks[0].decisions[0].policy')" = cache ] || fail "the cached reply was not checked first"
pass "with no endpoint left, the task fails with the check's reason"

# min_quality raised above what the cached reply scored.
write_flow 'return 0.6' 0.5
run_flowrun "$WORK/flow.lua" --policy "$WORK/local-first.lua" --no-cache --out "$WORK/out" --json
expect_rc 0 "score 0.6, min_quality 0.5"
write_flow 'return 0.6' 0.9
before=$(( $(sim_requests local-m) + $(sim_requests cloud-m) ))
run
expect_rc 1 "score 0.6, min_quality 0.9"
[ "$(jqr '.tasks[0].decisions[0].policy')" = cache ] || fail "min_quality: the cache was not consulted"
jqr '.tasks[0].decisions[0].error' | grep -q "min_quality 0.90" || fail "min_quality error: $(jqr '.tasks[0].decisions[0].error')"
# Both endpoints' cached replies (score 0.6) are checked and refused; each
# endpoint has failed the task once, so nothing is asked again.
[ "$(jqr '[.tasks[0].decisions[] | "\(.policy)/\(.outcome)"] | join(",")')" = cache/quality,cache/quality ] ||
  fail "min_quality decisions: $(jqr '[.tasks[0].decisions[] | "\(.policy)/\(.outcome)"] | join(",")')"
[ $(( $(sim_requests local-m) + $(sim_requests cloud-m) )) -eq "$before" ] || fail "a refused endpoint was asked again"
jqr '.tasks[0].reason' | grep -q "scored 0.60 (min_quality 0.90)" || fail "reason: $(jqr '.tasks[0].reason')"
pass "a cached reply below the current min_quality is not reused"

# A check that returns nothing gets a message that says how to fix it.
write_flow 'local _ = out'
run_flowrun "$WORK/flow.lua" --no-cache --out "$WORK/out" --json
expect_rc 1 "a check that returns nothing"
jqr '.tasks[0].reason' |
  grep -qF "returned nothing; return a score from 0 to 1, true/false, optionally with a reason" ||
  fail "reason: $(jqr '.tasks[0].reason')"
jqr '.tasks[0].reason' | grep -qF "flow.lua:6" || fail "the message lacks file:line: $(jqr '.tasks[0].reason')"
pass "a check that returns nothing says so, with its file and line"
