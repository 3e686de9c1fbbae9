#!/usr/bin/env bash
# Lua that misbehaves never takes flowrun down and every load error names
# file:line. A policy whose table has a metamethod that raises is exit 78
# with the file and line at start; a hot reload to one mid-run is refused,
# the old version stays live and the run ends normally (exit 0, every task
# done, its runs row closed). Each class of load error that used to come
# without a line (deep nesting, the memory limit, error({}), error(),
# error(nil), error(obj) with __tostring) names file:line, in a workflow
# (exit 65) and in a policy (exit 78). Workflow tables with metamethods are
# read raw: they load and run.
source "$(dirname "$0")/lib.bash"

EP='endpoint "e" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m" }'
deep=$(printf '%.0s{' $(seq 300))$(printf '%.0s}' $(seq 300))

# no_abort WHAT: the process ended by exit, not by a signal, and said nothing
# of an unprotected error.
no_abort() {
  [ "$RC" -lt 128 ] || { cat "$WORK/stderr" >&2; fail "$1: killed by signal $((RC - 128))"; }
  if grep -q "unprotected" "$WORK/stderr"; then cat "$WORK/stderr" >&2; fail "$1: unprotected Lua error"; fi
}

# --- a policy with a metamethod that raises, at start ------------------------
cat >"$WORK/meta.lua" <<'LUA'
local route = function(task, candidates, run) return candidates[1] end
return setmetatable({ route = route }, {
  __index = function(t, k)
    error("no field " .. k)
  end,
})
LUA
{
  echo 'workflow { policy = "meta.lua" }'
  echo "$EP"
  echo 'agent "w" {}'
  echo 'task "a" { agent = "w", prompt = "REPLY: hi" }'
} >"$WORK/start.lua"
run_flowrun "$WORK/start.lua" --sim
no_abort "metamethod policy at start"
expect_rc 78 "metamethod policy at start"
expect_stderr "meta.lua:4: reading the table the policy file returned: no field on_result"
pass "a policy whose __index raises is exit 78 at meta.lua:4"

# --- each load-error class, in a workflow and in a policy ---------------------
# Each case is the line of Lua that fails, written on line 3 of its file.
cases=(
  "deep|local t = $deep|C stack overflow"
  "memory|local s = 'x' for i = 1, 40 do s = s .. s end|memory limit exceeded"
  "table|error({})|error object is a table value"
  "none|error()|error object is a nil value"
  "nil|error(nil)|error object is a nil value"
  "tostring|error(setmetatable({}, { __tostring = function() return 'a described failure' end }))|a described failure"
)
for c in "${cases[@]}"; do
  IFS='|' read -r name code words <<<"$c"
  # A workflow: the failing line is line 3.
  {
    echo "$EP"
    echo 'agent "w" {} task "a" { agent = "w", prompt = "REPLY: x" }'
    echo "$code"
  } >"$WORK/wf_$name.lua"
  run_flowrun "$WORK/wf_$name.lua" --sim
  no_abort "workflow $name"
  expect_rc 65 "workflow $name"
  expect_stderr "wf_$name.lua:3: "
  expect_stderr "$words"
  # A policy: the same line 3, at load.
  {
    echo '-- a policy that fails as it loads'
    echo 'local unused = 1'
    echo "$code"
    echo 'return { route = function() end }'
  } >"$WORK/pol_$name.lua"
  {
    echo "workflow { policy = \"pol_$name.lua\" }"
    echo "$EP"
    echo 'agent "w" {} task "a" { agent = "w", prompt = "REPLY: x" }'
  } >"$WORK/usepol_$name.lua"
  run_flowrun "$WORK/usepol_$name.lua" --sim
  no_abort "policy $name"
  expect_rc 78 "policy $name"
  expect_stderr "pol_$name.lua:3: "
  expect_stderr "$words"
done
pass "deep nesting, memory, error({}), error(), error(nil), error(__tostring): file:3, exit 65 and 78"

# --- workflow tables with metamethods are read raw -----------------------------
cat >"$WORK/rawwf.lua" <<LUA
$EP
local trap = { __index = function() error("never read through") end,
               __pairs = function() error("never iterated") end }
workflow(setmetatable({ name = "raw" }, trap))
agent "w" (setmetatable({}, trap))
task "a" (setmetatable({ agent = "w", prompt = "REPLY: from a" }, trap))
task "b" (setmetatable({ agent = "w", deps = setmetatable({ "a" }, trap),
  prompt = function(ctx)
    setmetatable(ctx, trap)
    return "REPLY: b saw " .. rawget(ctx, "a").text
  end,
  check = function(text, json) return setmetatable({}, trap) end }, trap))
LUA
run_flowrun "$WORK/rawwf.lua" --sim --out "$WORK/rawout" --json
no_abort "workflow tables with metamethods"
expect_rc 1 "a check that returns a table"
[ "$(cat "$WORK/rawout/a.txt")" = "from a" ] || fail "task a's output"
jqr '.tasks[] | select(.name == "b") | .reason' | grep -q "rawwf.lua:[0-9]*:.*check of task 'b' must return a score" ||
  fail "b's reason: $(jqr '.tasks[] | select(.name == "b") | .reason')"
pass "bodies, deps, ctx and check results with trapping metatables: read raw, b fails with its line"

# --- a hot reload to such a policy mid-run is refused --------------------------
start_sim --latency 150 --tps 0
mkdir -p "$WORK/policies"
POLICY="$WORK/policies/live.lua"
cat >"$POLICY" <<'LUA'
return { route = function(task, candidates, run)
  for _, c in ipairs(candidates) do
    if c.free > 0 then return c end
  end
end }
LUA
{
  echo "endpoint \"a\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"ma\", max_parallel = 2 }"
  echo "endpoint \"b\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"mb\", max_parallel = 2 }"
  echo 'workflow { policy = "policies/live.lua" }'
  echo 'agent "w" {}'
  echo 'for i = 1, 160 do task("t" .. i) { agent = "w", prompt = "REPLY: r" .. i } end'
} >"$WORK/reload.lua"
"$FLOWRUN" "$WORK/reload.lua" --out "$WORK/out" --state "$WORK/st" --json --log-level info \
  >"$WORK/stdout" 2>"$WORK/stderr" &
pid=$!
refused() { [ "$(grep -c 'reload=refused' "$WORK/stderr")" -ge "$1" ]; }
running() { kill -0 "$pid" 2>/dev/null || fail "the run ended before the reload was seen"; }

wait_running requests_at_least 8
# Version 2: its table raises on every missing field (on_result is one).
cat >"$POLICY.tmp" <<'LUA'
local route = function(task, candidates, run) return candidates[1] end
return setmetatable({ route = route }, {
  __index = function(t, k)
    error("reload trap " .. k)
  end,
})
LUA
mv "$POLICY.tmp" "$POLICY"
wait_running refused 1
running
# Version 3: route reached through a metamethod that raises.
cat >"$POLICY.tmp" <<'LUA'
local mt = {}
mt.__index = function(t, k)
  error({ code = 42 })
end
return setmetatable({}, mt)
LUA
mv "$POLICY.tmp" "$POLICY"
wait_running refused 2
running
set +e; wait "$pid"; RC=$?; set -e
leak_check "$WORK/stdout" "$WORK/stderr" || fail "the sentinel key leaked"
no_abort "reload to a metamethod policy"
expect_rc 0 "the run with two refused reloads"
[ "$(jqr '[.tasks[] | select(.status == "ok")] | length')" = 160 ] || fail "not every task is done"
[ "$(jqr '.policy_reloads | map("\(.version):\(.ok)") | join(",")')" = "2:false,3:false" ] ||
  fail "reloads: $(jqr .policy_reloads)"
jqr '.policy_reloads[0].error' | grep -q "live.lua:4: .*reload trap on_result" ||
  fail "reload 2 error: $(jqr '.policy_reloads[0].error')"
jqr '.policy_reloads[1].error' | grep -q "live.lua:3: .*error object is a table value" ||
  fail "reload 3 error: $(jqr '.policy_reloads[1].error')"
[ "$(jqr '[.tasks[].decisions[] | select(.policy == "live") | .version] | unique | map(tostring) | join(",")')" = 1 ] ||
  fail "a refused version decided"
for i in 1 80 160; do [ "$(cat "$WORK/out/t$i.txt")" = "r$i" ] || fail "t$i output"; done
status=$(sqlite3 "$WORK/st/state.db" "SELECT status || ':' || exit_code FROM runs")
case "$status" in running*|"") fail "the runs row: '$status'" ;; esac
pass "two reloads to metamethod policies refused with file:line; 160 tasks done on version 1, exit 0, runs row $status"
