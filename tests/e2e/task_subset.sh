#!/usr/bin/env bash
# --task NAME (repeatable): a run or a plan of only those tasks and what
# they depend on, transitively; the rest is neither sent nor reported, the
# kept tasks' prompt functions and conditions still belong to them after
# the renumbering, and an unknown name is a usage error with the nearest.
source "$(dirname "$0")/lib.bash"
start_sim

cat >"$WORK/wf.lua" <<LUA
workflow { name = "subset" }
endpoint "e" { tier = "local", url = "$SIM_URL/v1", model = "m", max_parallel = 4 }
agent "a" { }
task "unrelated" { agent = "a", prompt = "first declared, dropped" }
task "design"    { agent = "a", prompt = "design" }
task "other"     { agent = "a", prompt = "dropped too" }
task "impl"      { agent = "a", deps = { "design" },
                   prompt = function(ctx) return "impl of " .. ctx.design.text end }
task "tests"     { agent = "a", deps = { "design" }, when = "{{design.status}}", prompt = "t" }
task "review"    { agent = "a", deps = { "impl", "tests" },
                   prompt = function(ctx) return "review " .. ctx.impl.text .. ctx.tests.text end }
task "docs"      { agent = "a", deps = { "review" }, prompt = "docs {{review}}" }
LUA


run_flowrun plan "$WORK/wf.lua" --task review --json
expect_rc 0 "plan --task review"
[ "$(jqr '[.tasks[].name] | join(" ")')" = "design impl tests review" ] ||
  fail "plan --task review planned: $(jqr '[.tasks[].name] | join(" ")')"
[ "$(sim_requests)" = 0 ] || fail "the plan sent requests"
pass "plan --task review: design, impl, tests, review (not unrelated, other, docs)"

run_flowrun "$WORK/wf.lua" --task review --task other --json --out "$WORK/out"
expect_rc 0 "run --task review --task other"
[ "$(jqr '[.tasks[] | "\(.name)=\(.status)"] | join(" ")')" = \
  "design=ok other=ok impl=ok tests=ok review=ok" ] ||
  fail "the run reported: $(jqr '[.tasks[] | "\(.name)=\(.status)"] | join(" ")')"
[ "$(sim_requests)" = 5 ] || fail "the simulator got $(sim_requests) requests, expected 5"
[ "$(jqr '.tasks[] | select(.name == "impl") | .deps | join(",")')" = design ] ||
  fail "impl's deps in the report"
[ ! -e "$WORK/out/docs.txt" ] && [ ! -e "$WORK/out/unrelated.txt" ] || fail "a dropped task wrote"
pass "run --task review --task other: 5 requests, the prompt functions and the condition kept"

run_flowrun "$WORK/wf.lua" --task reviw
expect_rc 2 "an unknown --task"
expect_stderr "no task 'reviw'; did you mean 'review'?"
run_flowrun plan "$WORK/wf.lua" --task zzzzzz
expect_rc 2 "an unknown --task with no near name"
expect_stderr "(tasks: unrelated, design, other, impl, tests, review, docs)"
[ "$(sim_requests)" = 5 ] || fail "a usage error sent requests"
pass "an unknown --task is a usage error (2) naming the nearest task or the tasks"

# A fan-out kept by --task still reads its own source after the renumbering
# (tasks declared before it are dropped): one instance per item of the plan.
cat >"$WORK/fan.lua" <<LUA
workflow { name = "subset-fanout" }
endpoint "e" { tier = "local", url = "$SIM_URL/v1", model = "m", max_parallel = 4 }
agent "a" { }
task "dropped1" { agent = "a", prompt = "dropped" }
task "dropped2" { agent = "a", prompt = "dropped" }
task "other"    { agent = "a", prompt = [[REPLY: {"mods": ["x"]}]], schema = "json" }
task "plan"     { agent = "a", prompt = [[REPLY: {"mods": ["p", "q", "r"]}]], schema = "json" }
task "module"   { agent = "a", deps = { "plan" }, foreach = "plan.json.mods", prompt = "REPLY: built {{item}}" }
task "join"     { agent = "a", deps = { "module" }, prompt = "REPLY: {{module}}" }
LUA
run_flowrun "$WORK/fan.lua" --task join --json --out "$WORK/out-fan"
expect_rc 0 "run --task join of a fan-out"
[ "$(jqr '[.tasks[] | select(.instance_of == "module") | .output] | join(",")')" = "built p,built q,built r" ] ||
  fail "the instances of the kept fan-out: $(jqr '[.tasks[] | select(.instance_of == "module") | .output] | join(",")')"
pass "--task join keeps a fan-out reading its own source after the renumbering: 3 instances"
