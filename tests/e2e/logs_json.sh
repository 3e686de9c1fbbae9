#!/usr/bin/env bash
# Structured logs: a run with retries (a 503 that cools its endpoint down,
# then a 500), tool calls, a fallback and --explain, at --log-level debug
# with --log-format json: every stderr line parses as one JSON object with
# level and event; the task-level events name their task; the explain lines
# are "route.decision" objects with the task, endpoint, policy, version,
# reason and the candidates as an array; and the text format of the same
# run keeps its lines (explain and the cooldown as before, no JSON).
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0 --model "flaky:faults=503+500+ok" --model "flaky2:faults=503+500+ok" --model "tooly"
cat >"$WORK/flow.lua" <<LUA
workflow { name = "logs", defaults = { retries = 3, timeout = 30 } }
endpoint "flaky" { tier = "local", url = "$SIM_URL/v1", model = "flaky" }
endpoint "tools" { tier = "cloud", url = "$SIM_URL/v1", model = "tooly", api_key_env = "SIM_TEST_KEY",
                   price = { input = 1.0, output = 2.0 } }
tool "word_count" {
  description = "Counts the words of a text",
  parameters = { type = "object", required = { "text" }, properties = { text = { type = "string" } } },
  run = function(args) local n = 0; for _ in args.text:gmatch("%S+") do n = n + 1 end; return tostring(n) end,
}
agent "plain" {}
agent "worker" { tools = { "word_count" } }
task "retried" { agent = "plain", endpoint = "flaky", prompt = "REPLY: fine at last" }
task "counted" { agent = "worker", endpoint = "tools", prompt = [[Count.
@@call word_count {"text": "one two three"}]] }
LUA
run_flowrun "$WORK/flow.lua" --state "$WORK/st" --out "$WORK/o" --explain --log-format json --log-level debug
expect_rc 0 "json run"
[ -s "$WORK/stderr" ] || fail "no log lines"
n=0
while IFS= read -r line; do
  n=$((n + 1))
  # The summary follows the log lines on stderr, after a blank line.
  [ -n "$line" ] || break
  echo "$line" | jq -e 'type == "object" and (.level | type == "string") and (.event | type == "string")' \
    >/dev/null || fail "line $n is not a JSON log object with level and event: $line"
done <"$WORK/stderr"
sed -n '/^$/q;p' "$WORK/stderr" >"$WORK/log.jsonl"
sed -n '/^$/,$p' "$WORK/stderr" | grep -q '^done 2/2' || fail "no summary after the log lines"
events() { jq -r '.event' "$WORK/log.jsonl" | sort -u; }
for ev in task.dispatch task.attempt_failed endpoint.cooldown tool.call route.decision; do
  events | grep -qx "$ev" || fail "no $ev event: $(events | tr '\n' ' ')"
done
# Events about a task name it.
jq -se 'map(select(.event | test("^(task|tool\\.call|route\\.decision|policy\\.error)")))
        | length > 0 and all(.task | type == "string")' "$WORK/log.jsonl" >/dev/null ||
  fail "a task event without its task"
jq -se 'map(select(.event == "endpoint.cooldown")) | length > 0 and all(.endpoint == "flaky")' \
  "$WORK/log.jsonl" >/dev/null || fail "a cooldown of another endpoint"
# The explain decisions, as objects.
jq -se 'map(select(.event == "route.decision" and .task == "retried")) | length > 0 and all(
         (.endpoint == "flaky") and (.policy | type == "string") and (.version | type == "number")
         and (.reason | type == "string") and (.candidates | type == "array" and length >= 1)
         and (.candidates[0].name | type == "string"))' "$WORK/log.jsonl" >/dev/null ||
  fail "no route.decision object for retried"
[ "$(jq -r 'select(.event == "task.attempt_failed") | .task' "$WORK/log.jsonl" | sort -u)" = retried ] ||
  fail "attempt failures not of retried"
pass "every JSON log line parses, with level, event and task"

# The text format of the same run (on a model whose faults are still to
# come) is unchanged: key=value lines, explain text.
sed 's/model = "flaky"/model = "flaky2"/' "$WORK/flow.lua" >"$WORK/flow2.lua"
run_flowrun "$WORK/flow2.lua" --state "$WORK/st2" --out "$WORK/o2" --explain --log-level info
expect_rc 0 "text run"
expect_stderr "explain: retried -> flaky  ("
expect_stderr "flowrun: info endpoint endpoint=flaky cooldown_ms="
expect_stderr "flowrun: info sched task=retried endpoint=flaky tier=local attempt=1 dispatch"
if grep -q '^{' "$WORK/stderr"; then fail "JSON in the text format"; fi
pass "the text format keeps its lines"
