#!/usr/bin/env bash
# A run of 200 tasks during which the policy file is rewritten three times:
# once with a syntax error, once with a runaway loop inside pcall, once with
# a valid change. Every task finishes; the report shows the decisions of
# each valid version, the failed reloads and the fallback decisions, and no
# task was routed by a broken version.
source "$(dirname "$0")/lib.bash"
start_sim --latency 150 --tps 0

mkdir -p "$WORK/policies"
POLICY="$WORK/policies/prefer.lua"
# Version 1 prefers endpoint a, and fails on purpose for tasks ending in 7:
# those decisions fall back to the built-in default.
cat >"$POLICY" <<'LUA'
local function pick(candidates, order)
  for _, want in ipairs(order) do
    for _, c in ipairs(candidates) do
      if c.name == want and c.free > 0 then return c end
    end
  end
  return nil
end
return {
  route = function(task, candidates, run)
    if task.name:find("7$") then error("version 1 refuses " .. task.name) end
    return pick(candidates, { "a", "b" })
  end,
}
LUA
{
  echo "endpoint \"a\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"ma\", max_parallel = 2 }"
  echo "endpoint \"b\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"mb\", max_parallel = 2 }"
  echo "workflow { policy = \"policies/prefer.lua\" }"
  echo 'agent "w" {}'
  echo 'for i = 1, 200 do task("t" .. i) { agent = "w", prompt = "REPLY: r" .. i } end'
} >"$WORK/flow.lua"

"$FLOWRUN" "$WORK/flow.lua" --out "$WORK/out" --json --log-level info >"$WORK/stdout" 2>"$WORK/stderr" &
pid=$!

refused() { [ "$(grep -c 'reload=refused' "$WORK/stderr")" -ge "$1" ]; }
reloaded() { grep -q 'version=4 reload=ok' "$WORK/stderr"; }

wait_for requests_at_least 20
# 2: a syntax error, written in place.
printf 'return { route = function(task, candidates\n' >"$POLICY"
wait_for refused 1
# 3: a runaway loop inside pcall, saved the way editors do (rename over).
cat >"$POLICY.tmp" <<'LUA'
return { route = function(task, candidates, run)
  pcall(function() while true do end end)
  return candidates[1]
end }
LUA
mv "$POLICY.tmp" "$POLICY"
wait_for refused 2
# 4: a valid change: prefer b now.
cat >"$POLICY.tmp" <<'LUA'
return { route = function(task, candidates, run)
  for _, want in ipairs({ "b", "a" }) do
    for _, c in ipairs(candidates) do
      if c.name == want and c.free > 0 then return c end
    end
  end
end }
LUA
mv "$POLICY.tmp" "$POLICY"
wait_for reloaded
set +e; wait "$pid"; RC=$?; set -e
expect_rc 0 "the run with three rewrites"

[ "$(jqr '[.tasks[] | select(.status == "ok")] | length')" = 200 ] || fail "not every task is done"
[ "$(jqr '.policy_reloads | map("\(.version):\(.ok)") | join(",")')" = "2:false,3:false,4:true" ] ||
  fail "reloads: $(jqr .policy_reloads)"
jqr '.policy_reloads[0].error' | grep -q "prefer.lua:2:" || fail "syntax error without file:line: $(jqr '.policy_reloads[0].error')"
jqr '.policy_reloads[1].error' | grep -qi "instruction\|limit" || fail "runaway loop: $(jqr '.policy_reloads[1].error')"
# Who decided what.
versions=$(jqr '[.tasks[].decisions[] | select(.policy == "prefer") | .version] | unique | map(tostring) | join(",")')
[ "$versions" = "1,4" ] || fail "decisions by versions $versions"
[ "$(jqr '[.tasks[].decisions[] | select(.version == 2 or .version == 3)] | length')" = 0 ] ||
  fail "a broken version routed a task"
fallback=$(jqr '[.tasks[].decisions[] | select(.policy == "default")] | length')
[ "$fallback" -ge 1 ] || fail "no fallback decisions"
[ "$(jqr '.policy_errors')" = "$fallback" ] || fail "policy_errors $(jqr .policy_errors) != fallback decisions $fallback"
jqr '[.tasks[].decisions[] | select(.policy == "default")] | .[0].version' | grep -qx 1 || fail "fallback version"
v1=$(jqr '[.tasks[].decisions[] | select(.policy == "prefer" and .version == 1)] | length')
v4=$(jqr '[.tasks[].decisions[] | select(.policy == "prefer" and .version == 4)] | length')
[ "$v1" -ge 1 ] && [ "$v4" -ge 1 ] || fail "decisions: v1 $v1, v4 $v4"
grep -c "version 1 refuses" "$WORK/stderr" | grep -qx 1 || fail "the policy error was not logged exactly once"
pass "200 tasks done across 3 rewrites: v1 decided $v1, v4 decided $v4, $fallback fell back, 2 reloads refused"

for i in 1 100 200; do [ "$(cat "$WORK/out/t$i.txt")" = "r$i" ] || fail "t$i output"; done
pass "outputs intact"
