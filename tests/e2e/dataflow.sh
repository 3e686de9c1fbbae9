#!/usr/bin/env bash
# A task's output reaches its dependents exactly: through {{dep}},
# {{dep.json.field}}, {{var.name}} and prompt functions, streamed or not,
# and lands in --out, in the save path and in the JSON report.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0

cat >"$WORK/flow.lua" <<LUA
workflow { name = "dataflow", vars = { who = "default" } }
endpoint "streamed" { tier = "local", url = "$SIM_URL/v1", model = "m-stream", max_parallel = 2 }
endpoint "plain" { tier = "local", url = "$SIM_URL/v1", model = "m-plain", max_parallel = 2,
                   stream = false }
agent "a" { system = "test agent" }
task "seed" { agent = "a", endpoint = "streamed", prompt = "REPLY: alpha-123 beta" }
task "files" {
  agent = "a", endpoint = "plain",
  schema = { type = "object", properties = { files = { type = "array" } } },
  prompt = 'REPLY: {"files": ["main.c", "util.c"], "count": 2}',
}
task "echo" { agent = "a", deps = { "seed" }, endpoint = "plain",
              prompt = "REPLY: got [{{seed}}] for {{var.who}}" }
task "second_file" { agent = "a", deps = { "files" }, endpoint = "streamed",
                     prompt = "REPLY: second={{files.json.files.1}} count={{files.json.count}}" }
task "shout" {
  agent = "a", deps = { "echo", "second_file" }, save = "saved/shout.txt",
  prompt = function(ctx)
    return "REPLY: " .. string.upper(ctx.echo.text) .. " / " .. ctx.second_file.text
  end,
}
LUA

run_flowrun "$WORK/flow.lua" --var who=tester --out "$WORK/out" --json
expect_rc 0 "dataflow run"

[ "$(cat "$WORK/out/seed.txt")" = "alpha-123 beta" ] || fail "seed output: $(cat "$WORK/out/seed.txt")"
[ "$(cat "$WORK/out/echo.txt")" = "got [alpha-123 beta] for tester" ] || fail "echo: $(cat "$WORK/out/echo.txt")"
pass "{{dep}} and {{var.name}} pass text exactly (streamed and not)"

[ "$(jq -r '.files[1]' "$WORK/out/files.json")" = "util.c" ] || fail "files.json"
[ "$(cat "$WORK/out/second_file.txt")" = "second=util.c count=2" ] || fail "second_file: $(cat "$WORK/out/second_file.txt")"
pass "{{dep.json.field}} reads structured output; JSON outputs are written as .json"

expected="GOT [ALPHA-123 BETA] FOR TESTER / second=util.c count=2"
[ "$(cat "$WORK/out/shout.txt")" = "$expected" ] || fail "shout: $(cat "$WORK/out/shout.txt")"
[ "$(cat "$WORK/saved/shout.txt")" = "$expected" ] || fail "save path"
pass "prompt functions see ctx.dep.text; save paths are relative to the workflow"

[ "$(jqr .status)" = ok ] || fail "report status"
[ "$(jqr .exit_code)" = 0 ] || fail "report exit_code"
[ "$(jqr '.tasks | length')" = 5 ] || fail "report tasks"
[ "$(jqr '.tasks[] | select(.name=="echo") | .output')" = "got [alpha-123 beta] for tester" ] || fail "report output"
[ "$(jqr '.tasks[] | select(.name=="echo") | .endpoint')" = plain ] || fail "report endpoint"
[ "$(jqr '.tasks[] | select(.name=="seed") | .tokens.output')" = 2 ] || fail "report tokens"
[ "$(jqr '.tasks[] | select(.name=="files") | .json.count')" = 2 ] || fail "report json"
[ "$(jqr '[.tasks[].decisions[0].policy] | unique | .[0]')" = balanced ] || fail "decisions"
[ "$(jqr '.tasks[] | select(.name=="seed") | .usage_estimated')" = false ] || fail "usage_estimated"
for k in run workflow makespan_ms critical_path_ms cost_usd latency_ms local_token_share endpoints; do
  [ "$(jqr "has(\"$k\")")" = true ] || fail "report lacks $k"
done
pass "the JSON report carries status, outputs, tokens, decisions and run figures"

# A run's summary goes to stderr, never into the JSON on stdout.
jq -e . "$WORK/stdout" >/dev/null || fail "stdout is not one JSON document"
expect_stderr "done 5/5"
pass "summary on stderr, JSON on stdout"
