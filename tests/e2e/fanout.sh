#!/usr/bin/env bash
# Fan-out (`foreach`): a plan that returns 12 modules gives 12 instances,
# each a task of its own (its own request, seen once by the simulator),
# running in parallel up to the endpoint's slots; the join receives all 12
# in item order. Named instances, an empty list, a list over max_items, a
# value that is not an array, a missing path, duplicate names and load
# errors; kill -9 during the fan-out and a rerun that keeps the same 12
# instances and pays none twice; `flowrun plan` shows "× 12".
source "$(dirname "$0")/lib.bash"

modules_json() { # N: {"modules": [{"name": "m01", "spec": "spec 1"}, ...], "title": "t"}
  local n=$1 i sep=""
  printf '{"title": "modules", "modules": ['
  for i in $(seq 1 "$n"); do
    printf '%s{"name": "m%02d", "spec": "spec %d"}' "$sep" "$i" "$i"
    sep=", "
  done
  printf ']}'
}

# flow URL N [MODULE-FIELDS]: plan (N modules) -> module (foreach) -> joins.
flow() {
  cat <<LUA
workflow { name = "fanout", defaults = { retries = 0, timeout = 120 } }
endpoint "p" { tier = "local", url = "$1/v1", model = "m_plan" }
endpoint "e" { tier = "local", url = "$1/v1", model = "m_work", max_parallel = 4 }
endpoint "j" { tier = "local", url = "$1/v1", model = "m_join" }
agent "a" {}
task "plan" { agent = "a", endpoint = "p", schema = "json", prompt = [[REPLY: $(modules_json "$2")]] }
task "module" { agent = "a", endpoint = "e", deps = { "plan" }, foreach = "plan.json.modules",
                plan_items = 12, schema = "json", ${3:-}
                prompt = [[REPLY: {"name": "{{item.name}}", "spec": "{{item.spec}}", "i": {{index}}}]] }
task "join" { agent = "a", endpoint = "j", deps = { "module" },
              prompt = function(ctx)
                local t = {}
                for i, m in ipairs(ctx.module) do t[#t + 1] = m.index .. ":" .. m.name .. ":" .. m.json.name .. ":" .. m.status end
                return "REPLY: " .. #ctx.module .. " instances: " .. table.concat(t, ",")
              end }
task "texts" { agent = "a", endpoint = "j", deps = { "module" }, prompt = "all:\n{{module}}\nREPLY: texts" }
task "jsons" { agent = "a", endpoint = "j", deps = { "module" }, schema = "json",
               prompt = [[REPLY: {"all": {{module.json}}}]] }
LUA
}

# ---- 12 modules: 12 instances, in parallel up to the caps, joined in order
start_sim --latency 100 --tps 0 --record "$WORK/rec.jsonl"
mkdir -p "$WORK/a"
flow "$SIM_URL" 12 >"$WORK/a/flow.lua"
run_flowrun "$WORK/a/flow.lua" --json --out "$WORK/a/out" --state "$WORK/a/state"
expect_rc 0 "12 modules"
names=$(jqr '[.tasks[] | select(.instance_of == "module") | "\(.name)@\(.index)"] | join(",")')
want=$(for i in $(seq 1 12); do printf 'module[%d]@%d,' "$i" "$i"; done)
[ "$names" = "${want%,}" ] || fail "instances: $names"
[ "$(jqr '[.tasks[] | select(.instance_of == "module") | .status] | unique | join(",")')" = ok ] ||
  fail "instances not all ok"
[ "$(jqr '.tasks[] | select(.name == "module") | "\(.status) \(.instances) \(.foreach)"')" = "ok 12 plan.json.modules" ] ||
  fail "the fan-out task: $(jqr '.tasks[] | select(.name == "module")')"
[ "$(sim_requests m_work)" = 12 ] || fail "m_work requests: $(sim_requests m_work)"
[ "$(sim_requests m_plan)" = 1 ] || fail "m_plan requests: $(sim_requests m_plan)"
# Each instance's own request reached the simulator exactly once.
per=$(jq -r 'select(.body.model == "m_work") | .body.messages[-1].content' "$WORK/rec.jsonl" |
  grep -o '"name": "m[0-9]*"' | sort | uniq -c | awk '{print $1}' | sort -u)
[ "$per" = 1 ] && [ "$(jq -r 'select(.body.model == "m_work")' "$WORK/rec.jsonl" | grep -c '"model"')" = 12 ] ||
  fail "each instance's request once: $per"
peak=$(jqr '.endpoints.e.peak_in_flight')
[ "$peak" = 4 ] && [ "$(jq -r '.models.m_work.peak_in_flight' <<<"$(sim_stats)")" = 4 ] ||
  fail "peak in flight: flowrun $peak, simulator $(jq -r '.models.m_work.peak_in_flight' <<<"$(sim_stats)") (max_parallel 4)"
want=$(for i in $(seq 1 12); do printf '%d:module[%d]:m%02d:ok,' "$i" "$i" "$i"; done)
[ "$(cat "$WORK/a/out/join.txt")" = "12 instances: ${want%,}" ] || fail "join: $(cat "$WORK/a/out/join.txt")"
sent=$(jq -r 'select(.body.model == "m_join") | .body.messages[-1].content' "$WORK/rec.jsonl" | grep -c '^{"name": "m[0-9]*", "spec"' || true)
[ "$sent" = 12 ] || fail "{{module}} carried $sent instance texts"
jq -r 'select(.body.model == "m_join") | .body.messages[-1].content' "$WORK/rec.jsonl" |
  grep -A2 '"i": 1}' | sed -n 2p | grep -q '^$' || fail "{{module}}: no blank line between texts"
[ "$(jqr '.tasks[] | select(.name == "jsons") | .json.all | map(.name) | join(",")')" = \
  "$(seq -f 'm%02g' 1 12 | paste -sd,)" ] || fail "{{module.json}}: $(jqr '.tasks[] | select(.name == "jsons") | .json')"
pass "12 modules: 12 instances (each request once), peak $peak in flight of max_parallel 4, the join receives all 12 in order ({{module}}, {{module.json}}, ctx.module)"

run_flowrun "$WORK/a/flow.lua" --out "$WORK/a/out2" --state "$WORK/a/state"
expect_rc 0 "summary"
grep -q "module\[12\] *ok" "$WORK/stdout" "$WORK/stderr" || fail "summary lacks module[12]"
grep -q "module: foreach plan.json.modules: 12 instances, module\[1\] ... module\[12\]" "$WORK/stdout" "$WORK/stderr" ||
  fail "summary lacks the fan-out line"
pass "the summary lists the instances"

# ---- plan: × 12
run_flowrun plan "$WORK/a/flow.lua" --state "$WORK/a/state"
expect_rc 0 "plan"
grep -q "module *× 12, known when plan runs" "$WORK/stdout" || { cat "$WORK/stdout"; fail "plan text lacks × 12"; }
run_flowrun plan "$WORK/a/flow.lua" --json --state "$WORK/a/state"
[ "$(jqr '.tasks[] | select(.name == "module") | "\(.instances) \(.instances_known)"')" = "12 true" ] ||
  fail "plan json: $(jqr '.tasks[] | select(.name == "module")')"
[ "$(jqr '[.tasks[] | select(.instance_of == "module")] | length')" = 12 ] || fail "plan: 12 instances estimated"
sed 's/plan_items = 12, //' "$WORK/a/flow.lua" >"$WORK/a/noitems.lua"
run_flowrun plan "$WORK/a/noitems.lua" --state "$WORK/a/state"
grep -q "module *× N, known when plan runs (unknown: one instance estimated; set plan_items)" "$WORK/stdout" ||
  { cat "$WORK/stdout"; fail "plan without plan_items"; }
pass "flowrun plan shows the fan-out as × 12 (plan_items), or unknown with one instance estimated"

# ---- named instances; duplicate names
mkdir -p "$WORK/n"
flow "$SIM_URL" 3 'name = "impl-{{item.name}}",' >"$WORK/n/flow.lua"
run_flowrun "$WORK/n/flow.lua" --json --out "$WORK/n/out" --state "$WORK/n/state"
expect_rc 0 "named"
[ "$(jqr '[.tasks[] | select(.instance_of == "module") | .name] | join(",")')" = "impl-m01,impl-m02,impl-m03" ] ||
  fail "named: $(jqr '[.tasks[] | .name] | join(",")')"
[ -f "$WORK/n/out/impl-m02.json" ] || [ -f "$WORK/n/out/impl-m02.txt" ] || fail "named: no output file for impl-m02 ($(ls "$WORK/n/out"))"
run_flowrun plan "$WORK/n/flow.lua" --state "$WORK/n/state"
expect_rc 0 "plan of named instances"
grep -q "module *× 12, known when plan runs" "$WORK/stdout" && grep -q "module\[12\]" "$WORK/stdout" ||
  { cat "$WORK/stdout"; fail "plan of named instances"; }
flow "$SIM_URL" 3 'name = "same",' >"$WORK/n/dup.lua"
run_flowrun "$WORK/n/dup.lua" --json --state "$WORK/n/state"
expect_rc 1 "duplicate names"
[ "$(jqr '.tasks[] | select(.name == "module") | .reason')" = "foreach: items 1 and 2 are both named 'same' (field 'name'); instance names must be unique" ] ||
  fail "duplicate: $(jqr '.tasks[] | select(.name == "module") | .reason')"
[ "$(jqr '.tasks[] | select(.name == "join") | .status')" = skipped ] || fail "duplicate: join not skipped"
pass "instances named by a template over the item; duplicate names fail the fan-out"

# ---- empty list, over max_items, not an array, missing path
before=$(sim_requests m_work)
mkdir -p "$WORK/e"
flow "$SIM_URL" 0 >"$WORK/e/flow.lua"
run_flowrun "$WORK/e/flow.lua" --json --out "$WORK/e/out" --state "$WORK/e/state"
expect_rc 0 "empty list"
[ "$(jqr '.tasks[] | select(.name == "module") | "\(.status)|\(.instances)|\(.reason)"')" = "ok|0|foreach: the list is empty" ] ||
  fail "empty: $(jqr '.tasks[] | select(.name == "module")')"
[ "$(jqr '.tasks[] | select(.name == "join") | .status')" = ok ] || fail "empty: join did not run"
[ "$(cat "$WORK/e/out/join.txt")" = "0 instances: " ] || fail "empty: join $(cat "$WORK/e/out/join.txt")"
[ "$(sim_requests m_work)" = "$before" ] || fail "empty: instances were requested"
run_flowrun "$WORK/e/flow.lua" --out "$WORK/e/out2" --state "$WORK/e/state"
grep -q "module: foreach: the list is empty" "$WORK/stdout" "$WORK/stderr" || fail "empty: summary lacks the note"

flow "$SIM_URL" 12 'max_items = 5, plan_items = 3,' | sed 's/plan_items = 12, //' >"$WORK/e/over.lua"
run_flowrun "$WORK/e/over.lua" --json --state "$WORK/e/state"
expect_rc 1 "over max_items"
[ "$(jqr '.tasks[] | select(.name == "module") | "\(.status)|\(.reason)"')" = "failed|foreach: plan.json.modules has 12 items, more than max_items = 5 (raise max_items, or make the list shorter)" ] ||
  fail "over: $(jqr '.tasks[] | select(.name == "module") | .reason')"
[ "$(jqr '[.tasks[] | select(.instance_of)] | length')" = 0 ] || fail "over: instances were added"
[ "$(jqr '.tasks[] | select(.name == "join") | .status')" = skipped ] || fail "over: join not skipped"
[ "$(sim_requests m_work)" = "$before" ] || fail "over: instances were requested"

sed 's/foreach = "plan.json.modules"/foreach = "plan.json.title"/' "$WORK/e/flow.lua" >"$WORK/e/str.lua"
run_flowrun "$WORK/e/str.lua" --json --state "$WORK/e/state"
expect_rc 1 "not an array"
[ "$(jqr '.tasks[] | select(.name == "module") | .reason')" = "foreach: plan.json.title is a string, not an array" ] ||
  fail "not an array: $(jqr '.tasks[] | select(.name == "module") | .reason')"
sed 's/foreach = "plan.json.modules"/foreach = "plan.json.parts.0"/' "$WORK/e/flow.lua" >"$WORK/e/miss.lua"
run_flowrun "$WORK/e/miss.lua" --json --state "$WORK/e/state"
expect_rc 1 "missing path"
case "$(jqr '.tasks[] | select(.name == "module") | .reason')" in
  "foreach: plan.json.parts.0: there is no 'parts' in an object"*) ;;
  *) fail "missing path: $(jqr '.tasks[] | select(.name == "module") | .reason')" ;;
esac
pass "an empty list ends the fan-out ok with zero instances and says so; over max_items, not an array and a missing path fail it naming what was found"

# ---- a condition per instance; a failed instance fails the fan-out
kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""
start_sim --latency 5 --tps 0 --model "m_one:faults=ok+500"
cat >"$WORK/e/cond.lua" <<LUA
workflow { name = "cond", defaults = { retries = 0 } }
endpoint "o" { tier = "local", url = "$SIM_URL/v1", model = "m_one", max_parallel = 1 }
agent "a" {}
task "plan" { agent = "a", endpoint = "o", schema = "json", prompt = [[REPLY: {"items": ["x", "y", "z", "w"]}]] }
task "module" { agent = "a", endpoint = "o", deps = { "plan" }, foreach = "plan.json.items",
                when = function(ctx) return ctx.item ~= "y" end, prompt = "REPLY: {{item}}" }
task "join" { agent = "a", endpoint = "o", deps = { "module" }, prompt = "REPLY: joined" }
task "after" { agent = "a", endpoint = "o", deps = { "module" }, trigger = "all_done",
               prompt = function(ctx)
                 local t = {}
                 for _, m in ipairs(ctx.module) do t[#t + 1] = m.name .. "=" .. m.status end
                 return "REPLY: " .. table.concat(t, ",")
               end }
LUA
run_flowrun "$WORK/e/cond.lua" --json --out "$WORK/e/cond" --state "$WORK/e/cstate"
expect_rc 1 "a failed instance"
[ "$(jqr '[.tasks[] | select(.instance_of) | "\(.name)=\(.status)"] | join(",")')" = "module[1]=failed,module[2]=skipped,module[3]=ok,module[4]=ok" ] ||
  fail "instances: $(jqr '[.tasks[] | select(.instance_of) | "\(.name)=\(.status):\(.reason)"] | join(",")')"
[ "$(jqr '.tasks[] | select(.name == "module[2]") | .reason')" = "condition false" ] || fail "module[2] not skipped by its condition"
[ "$(jqr '.tasks[] | select(.name == "module") | "\(.status)|\(.reason)"')" = "failed|1 of 4 instances did not succeed: 'module[1]' (failed)" ] ||
  fail "fan-out: $(jqr '.tasks[] | select(.name == "module") | .reason')"
[ "$(jqr '.tasks[] | select(.name == "join") | "\(.status)|\(.reason)"')" = "skipped|dependency 'module' did not succeed" ] ||
  fail "join: $(jqr '.tasks[] | select(.name == "join")')"
[ "$(cat "$WORK/e/cond/after.txt")" = "module[1]=failed,module[2]=skipped,module[3]=ok,module[4]=ok" ] ||
  fail "after: $(cat "$WORK/e/cond/after.txt")"
pass "each instance has its own condition (ctx.item); a failed instance fails the fan-out naming it, and its dependents follow their triggers"

# ---- instances use their fan-out's tools
cat >"$WORK/e/tools.lua" <<LUA
workflow { name = "tools", defaults = { retries = 0 } }
endpoint "o" { tier = "local", url = "$SIM_URL/v1", model = "tool-model", max_parallel = 2 }
agent "a" {}
tool "word_count" {
  description = "Counts the words of a text",
  parameters = { type = "object", required = { "text" }, properties = { text = { type = "string" } } },
  run = function(args) local n = 0; for _ in args.text:gmatch("%S+") do n = n + 1 end; return tostring(n) end,
}
task "plan" { agent = "a", endpoint = "o", schema = "json", prompt = [[REPLY: {"texts": ["a b", "c d e"]}]] }
task "count" { agent = "a", endpoint = "o", deps = { "plan" }, foreach = "plan.json.texts",
               tools = { "word_count" }, prompt = [[Count.
@@call word_count {"text": "{{item}}"}]] }
LUA
run_flowrun "$WORK/e/tools.lua" --json --out "$WORK/e/tools" --state "$WORK/e/tstate"
expect_rc 0 "instances with tools"
grep -q "tool word_count: 2" "$WORK/e/tools/count[1].txt" && grep -q "tool word_count: 3" "$WORK/e/tools/count[2].txt" ||
  fail "instances' tool calls: $(cat "$WORK/e/tools/"*.txt)"
[ "$(jqr '[.tasks[] | select(.instance_of) | .tool_calls[0].ok] | join(",")')" = "true,true" ] || fail "tool calls not ok"
pass "each instance runs its fan-out's tools with its own item"

# ---- load errors at file:line
bad() { # FIELDS EXPECTED
  printf 'agent "a" {}\ntask "plan" { agent = "a", prompt = "hi" }\ntask "m" { agent = "a", deps = { "plan" }, prompt = "hi {{item}}", %s }\n' "$1" >"$WORK/bad.lua"
  run_flowrun "$WORK/bad.lua"
  expect_rc 65 "bad: $1"
  expect_stderr "bad.lua:3"
  expect_stderr "$2"
}
bad 'foreach = "plam.json.modules"' "'plam' is not a dependency; did you mean 'plan'?"
bad 'foreach = "plan.modules"' 'reads a JSON array: write "plan.json" or "plan.json.<path>"'
bad 'foreach = "plan.json", save = "x.txt"' "field 'save' makes no sense on a fan-out"
bad 'foreach = "plan.json", name = "{{item.name}} {{plan}}"' "field 'name': unknown placeholder '{{plan}}'"
bad 'foreach = "plan.json", max_items = 0' "field 'max_items' must be an integer from 1 to 10000"
bad 'max_items = 3' "field 'max_items' belongs to a fan-out and the task has no 'foreach'"
bad 'foreach = "plan.json", plan_itmes = 3' "did you mean 'plan_items'"
printf 'agent "a" {}\ntask "plan" { agent = "a", prompt = "hi" }\ntask "m" { agent = "a", deps = { "plan" }, prompt = "hi {{item}}" }\n' >"$WORK/bad.lua"
run_flowrun "$WORK/bad.lua"
expect_rc 65 "{{item}} without foreach"
expect_stderr "unknown placeholder '{{item}}'"
pass "bad fan-out fields are load errors at file:line"

# ---- kill -9 during the fan-out, rerun: the same 12 instances, none paid twice
# The first simulator answers the first 3 instances and leaves the next 4
# hanging (4 slots), so the kill lands while the fan-out runs, whatever the
# machine's load.
kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""
start_sim --latency 20 --tps 0 --record "$WORK/k1.jsonl" --model "m_work:faults=ok+ok+ok+hang+hang+hang+hang"
mkdir -p "$WORK/k"
flow "$SIM_URL" 12 >"$WORK/k/flow.lua"
"$FLOWRUN" "$WORK/k/flow.lua" --out "$WORK/k/killed" --state "$WORK/k/state" --json >/dev/null 2>"$WORK/k/killed.err" &
pid=$!
db="$WORK/k/state/state.db"
done_rows() { sqlite3 "$db" "SELECT count(*) FROM cache" 2>/dev/null || echo 0; }
for _ in $(seq 1 3000); do
  [ "$(jq -r 'select(.body.model == "m_work") | 1' "$WORK/k1.jsonl" 2>/dev/null | wc -l)" -ge 7 ] && [ "$(done_rows)" -ge 4 ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.01
done
kill -9 "$pid" 2>/dev/null || true
set +e; wait "$pid" 2>/dev/null; killed_rc=$?; set -e
[ "$killed_rc" = 137 ] || { cat "$WORK/k/killed.err" >&2; fail "the killed run exited $killed_rc, not by SIGKILL (137)"; }
sent1=$(jq -r 'select(.body.model == "m_work") | .body.messages[-1].content' "$WORK/k1.jsonl" | grep -o '"name": "m[0-9]*"' | sort)
done_at_kill=$(( $(done_rows) - 1 )) # the plan's row and the instances'
[ "$(wc -l <<<"$sent1")" = 7 ] && [ "$done_at_kill" = 3 ] ||
  fail "at the kill: $(wc -l <<<"$sent1") instance requests, $done_at_kill instances done (expected 7 and 3)"
[ "$(sqlite3 "$db" "SELECT group_concat(status) FROM runs")" = running ] || fail "the store does not hold the killed run as running"
kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""
start_sim --latency 20 --tps 0 --record "$WORK/k2.jsonl"
flow "$SIM_URL" 12 >"$WORK/k/flow.lua"
run_flowrun "$WORK/k/flow.lua" --out "$WORK/k/resumed" --state "$WORK/k/state" --json
expect_rc 0 "rerun after kill -9"
[ "$(jqr '[.tasks[] | select(.instance_of == "module") | .name] | join(",")')" = \
  "$(seq -f 'module[%g]' 1 12 | paste -sd,)" ] || fail "rerun: instances $(jqr '[.tasks[] | .name] | join(",")')"
[ "$(sim_requests m_plan)" = 0 ] || fail "rerun: the plan was requested again"
cached=$(jqr '[.tasks[] | select(.instance_of == "module" and .cached)] | length')
resent=$(sim_requests m_work)
[ "$cached" = 3 ] && [ "$((cached + resent))" = 12 ] ||
  fail "rerun: $cached instances from the cache, $resent requested (expected 3 + 9 = 12)"
sent2=$(jq -r 'select(.body.model == "m_work") | .body.messages[-1].content' "$WORK/k2.jsonl" | grep -o '"name": "m[0-9]*"' | sort)
answered1=$(jqr '[.tasks[] | select(.instance_of == "module" and .cached) | .index] | map("\"name\": \"m" + (if . < 10 then "0" else "" end) + tostring + "\"") | .[]')
while IFS= read -r a; do
  [ -z "$a" ] && continue
  ! grep -qxF "$a" <<<"$sent2" || fail "rerun: $a was done before the kill and requested again"
done <<<"$answered1"
[ "$(sort -u <<<"$sent2" | wc -l)" = 9 ] && [ "$(wc -l <<<"$sent2")" = 9 ] || fail "rerun: instance requests $sent2"
want=$(for i in $(seq 1 12); do printf '%d:module[%d]:m%02d:ok,' "$i" "$i" "$i"; done)
[ "$(cat "$WORK/k/resumed/join.txt")" = "12 instances: ${want%,}" ] || fail "rerun join: $(cat "$WORK/k/resumed/join.txt")"
pass "kill -9 during the fan-out (status $killed_rc, 3 of 12 instances done, 4 in flight): the rerun has the same 12 instances, the plan from the store, 3 from the cache and 9 requested: 12 answered in all, none paid twice"
