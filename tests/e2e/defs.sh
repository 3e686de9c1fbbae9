#!/usr/bin/env bash
# Editor support: `flowrun defs` prints the LuaLS definitions from the
# tables the loader checks fields against; the shipped lua/flowrun.d.lua is
# exactly that (regenerate it with `flowrun defs > lua/flowrun.d.lua`);
# every field the loader accepts is documented with a type and a
# description, and a field it refuses is not; a running policy receives
# exactly the documented keys. Then `flowrun init`: the starter project
# loads, plans and rehearses with --sim, and is never overwritten without
# --force.
source "$(dirname "$0")/lib.bash"

run_flowrun defs
expect_rc 0 "flowrun defs"
cp "$WORK/stdout" "$WORK/defs.lua"
head -1 "$WORK/defs.lua" | grep -q '^---@meta' || fail "defs does not start with ---@meta"
cmp -s "$WORK/defs.lua" "$SRC/lua/flowrun.d.lua" || {
  diff "$SRC/lua/flowrun.d.lua" "$WORK/defs.lua" | head -20 >&2
  fail "lua/flowrun.d.lua is not what flowrun defs prints: run 'flowrun defs > lua/flowrun.d.lua'"
}
for c in Workflow Budget Defaults Endpoint Price Timeouts Agent Task Mcp Tool PolicyTask Candidate \
  RunState Result Tokens Policy Ctx Output; do
  grep -q "^---@class flowrun\.$c\$" "$WORK/defs.lua" || fail "defs has no class flowrun.$c"
done
for d in workflow endpoint baseline agent task mcp tool; do
  grep -q "^function $d(" "$WORK/defs.lua" || fail "defs does not declare $d"
done
# Every field line has a name, a type and a description.
bad=$(grep '^---@field' "$WORK/defs.lua" | awk 'NF < 4' || true)
[ -z "$bad" ] || fail "a field without a type or description: $bad"
pass "flowrun defs prints ---@meta with every class and declaration; lua/flowrun.d.lua is current"

# fields CLASS: the field names of a class, one a line ("?" stripped).
fields() {
  awk -v cls="$1" '/^---@class /{on = ($2 == cls); next} on && /^---@field /{n = $2; sub(/\?$/, "", n); print n} on && !/^---@field /{on = 0}' "$WORK/defs.lua"
}
# The loader accepts each documented field of a task, an agent, an endpoint
# and the workflow's sub-tables (values of the documented type), and refuses
# a field that is not documented, naming it: the two lists are one.
cat >"$WORK/endpoints.lua" <<'LUA'
endpoint "e" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m" }
LUA
for kind in task agent endpoint mcp tool; do
  case $kind in task) cls=flowrun.Task ;; agent) cls=flowrun.Agent ;; endpoint) cls=flowrun.Endpoint ;;
  mcp) cls=flowrun.Mcp ;; tool) cls=flowrun.Tool ;; esac
  n=$(fields "$cls" | wc -l)
  [ "$n" -gt 3 ] || fail "$cls documents $n fields"
  # A misspelt field: the loader's did-you-mean names a documented field.
  first=$(fields "$cls" | head -1)
  cat >"$WORK/typo.lua" <<LUA
agent "a" {}
$kind "x" { ${first}zz = 1 }
task "t" { agent = "a", prompt = "p" }
LUA
  run_flowrun plan "$WORK/typo.lua" --endpoints "$WORK/endpoints.lua"
  [ "$RC" -ne 0 ] || fail "$kind with the unknown field ${first}zz loaded"
  expect_stderr "${first}zz"
  grep -qF "did you mean '$first'" "$WORK/stderr" || fail "$kind ${first}zz: no did-you-mean '$first' ($(cat "$WORK/stderr"))"
done
pass "each declaration's fields are documented, and a misspelt one is refused with the documented name"

# A policy that prints the keys of what it receives: each key is documented
# in its class, and every documented field that is never nil is there.
cat >"$WORK/keys.lua" <<'LUA'
local function keys(t)
  local k = {}
  for name in pairs(t) do k[#k + 1] = name end
  table.sort(k)
  return table.concat(k, " ")
end
return {
  route = function(task, candidates, run)
    print("KEYS flowrun.PolicyTask " .. keys(task))
    print("KEYS flowrun.Candidate " .. keys(candidates[1]))
    print("KEYS flowrun.RunState " .. keys(run))
    return candidates[1]
  end,
  on_result = function(task, result, run)
    print("KEYS flowrun.Result " .. keys(result))
    print("KEYS flowrun.Tokens " .. keys(result.tokens))
    print("KEYS flowrun.RunState " .. keys(run))
    return "accept"
  end,
}
LUA
cat >"$WORK/wf.lua" <<'LUA'
workflow { name = "keys", policy = "keys.lua", budget = { usd = 1 } }
endpoint "near" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m", tags = { "code" } }
endpoint "far" { tier = "cloud", url = "http://127.0.0.1:9/v1", model = "c", price = { input = 1, output = 2 } }
agent "a" { type = "code" }
task "one" { agent = "a", prompt = "hi" }
task "two" { agent = "a", deps = { "one" }, prompt = "again {{one}}" }
LUA
run_flowrun "$WORK/wf.lua" --sim --sim-latency 5 --sim-tps 0 -q --log-level info
expect_rc 0 "the run with the key-printing policy"
grep -o 'KEYS .*' "$WORK/stderr" | sort -u >"$WORK/keys.txt"
for cls in flowrun.PolicyTask flowrun.Candidate flowrun.RunState flowrun.Result flowrun.Tokens; do
  grep -q "^KEYS $cls " "$WORK/keys.txt" || fail "the policy never saw a $cls"
  documented=" $(fields "$cls" | tr '\n' ' ') "
  # Fields that may be nil (type "T?" or "any") may be missing.
  required=$(awk -v cls="$cls" '/^---@class /{on = ($2 == cls); next} on && /^---@field /{if ($3 !~ /\?$/ && $3 != "any") print $2; next} {on = 0}' "$WORK/defs.lua")
  while read -r _ _ seen; do
    for k in $seen; do
      [[ $documented == *" $k "* ]] || fail "the policy receives $cls.$k, which flowrun defs does not document"
    done
    for k in $required; do
      [[ " $seen " == *" $k "* ]] || fail "flowrun defs documents $cls.$k, which the policy did not receive"
    done
  done < <(grep "^KEYS $cls " "$WORK/keys.txt")
done
pass "route's task, candidates and run and on_result's result carry exactly the documented keys"

# ---- flowrun init -----------------------------------------------------------
run_flowrun init proj
expect_rc 0 "flowrun init proj"
for f in workflow.lua endpoints.lua policy.lua .luarc.json .luals/flowrun.d.lua; do
  [ -s "proj/$f" ] || fail "init did not write proj/$f"
  grep -qF "wrote proj/$f" "$WORK/stdout" || fail "init does not say it wrote proj/$f"
done
cmp -s proj/.luals/flowrun.d.lua "$WORK/defs.lua" || fail "init's definitions differ from flowrun defs"
[ "$(jq -r '.workspace.library[0]' proj/.luarc.json)" = .luals ] || fail ".luarc.json: workspace.library is not [.luals]"
[ "$(jq -r '.runtime.version' proj/.luarc.json)" = "Lua 5.4" ] || fail ".luarc.json: runtime.version"
grep -q 'api_key_env = "OPENROUTER_API_KEY"' proj/endpoints.lua || fail "the cloud endpoint does not take its key from a variable"
grep -q 'protocol = "ollama"' proj/endpoints.lua || fail "no local Ollama endpoint"
grep -q '^---@type flowrun.Policy$' proj/policy.lua || fail "the policy copy has no ---@type flowrun.Policy"
# The copy is the built-in policy with that one line added.
"$FLOWRUN" policy show balanced >"$WORK/balanced.lua"
grep -v '^---@type flowrun.Policy$' proj/policy.lua | cmp -s - "$WORK/balanced.lua" || fail "policy.lua is not the built-in balanced"
pass "flowrun init writes the workflow, the endpoints (Ollama and a cloud key by name), the policy, .luarc.json and the definitions"

cd proj
run_flowrun plan workflow.lua
expect_rc 0 "flowrun plan of the starter workflow"
grep -q "4 tasks" "$WORK/stdout" || fail "the plan does not show 4 tasks: $(head -3 "$WORK/stdout")"
run_flowrun workflow.lua --sim --sim-latency 5 --sim-tps 0 --json -q
expect_rc 0 "the starter workflow with --sim"
[ "$(jqr '[.tasks[] | select(.status == "ok")] | length')" = 4 ] || fail "not every task of the starter succeeded"
[ "$(jqr '[.tasks[] | .tier] | unique | join(",")')" = "cloud,local" ] || fail "the starter did not use both tiers: $(jqr '[.tasks[] | .tier]')"
[ "$(jqr .policy)" = policy ] || fail "the run's policy is $(jqr .policy), not the project's policy.lua"
cd ..
pass "the starter workflow plans and rehearses with --sim: 4 tasks ok, on local and cloud, with its own policy"

# Never overwrite: an existing file is named, and nothing is written.
echo "-- mine" >proj2-workflow.lua
mkdir proj2
cp proj2-workflow.lua proj2/workflow.lua
run_flowrun init proj2
expect_rc 2 "init over an existing workflow.lua"
expect_stderr "proj2/workflow.lua exists"
expect_stderr "--force"
cmp -s proj2/workflow.lua proj2-workflow.lua || fail "init changed an existing file"
[ ! -e proj2/endpoints.lua ] || fail "a refused init wrote endpoints.lua"
run_flowrun init proj2 --force
expect_rc 0 "init --force"
cmp -s proj2/workflow.lua proj/workflow.lua || fail "init --force did not overwrite workflow.lua"
# The current folder by default.
mkdir here && cd here
run_flowrun init
expect_rc 0 "init in the current folder"
[ -s workflow.lua ] && [ -s .luarc.json ] || fail "init without DIR wrote nothing here"
run_flowrun init
expect_rc 2 "a second init in the same folder"
expect_stderr "workflow.lua exists"
run_flowrun init a b
expect_rc 2 "init with two folders"
pass "init refuses to overwrite (the file named, nothing written), --force overwrites, DIR defaults to ."
