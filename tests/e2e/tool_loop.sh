#!/usr/bin/env bash
# The tool loop end to end: the real binary against flowrun-sim playing a
# model that asks for tool calls (its @@call script, docs/testing.md), with
# a Lua tool and command tools. The final output holds what the tools
# returned, under every protocol, streamed and not; the loop's bounds end a
# model that never stops; a hanging tool times out; a command's output is
# capped; a tool nobody offered runs nothing; the budget holds across turns.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0 --model "flaky:faults=ok+500" --model "dying:faults=ok+500+500"

tools_lua() { # the tools every workflow here declares
  cat <<'LUA'
tool "word_count" {
  description = "Counts the words of a text",
  parameters = { type = "object", required = { "text" },
                 properties = { text = { type = "string" } } },
  run = function(args) local n = 0; for _ in args.text:gmatch("%S+") do n = n + 1 end; return tostring(n) end,
}
tool "say" {
  description = "Prints a message",
  parameters = { type = "object", required = { "msg" }, properties = { msg = { type = "string" } } },
  command = { "echo", "{{args.msg}}" },
}
tool "sleeper" {
  description = "Sleeps",
  parameters = { type = "object", properties = { marker = { type = "string" } } },
  command = { "python3", "-c", "import time; time.sleep(30)", "{{args.marker}}" }, timeout = 1,
}
tool "numbers" {
  description = "Prints many numbers",
  parameters = { type = "object" },
  command = { "seq", "1", "100000" }, output_cap = 1000,
}
LUA
}

# ---- the same loop under every protocol, streamed and not ----------------
run_variant() { # run_variant PROTOCOL STREAM
  local proto=$1 stream=$2 url=$SIM_URL
  [ "$proto" = openai ] && url="$SIM_URL/v1"
  local dir="$WORK/$proto-$stream"
  mkdir -p "$dir"
  {
    cat <<LUA
workflow { name = "tool-loop" }
endpoint "m" { tier = "cloud", protocol = "$proto", url = "$url", model = "tool-model",
               stream = $stream, max_parallel = 2, api_key_env = "SIM_TEST_KEY",
               price = { input = 3.0, output = 15.0 } }
agent "worker" { system = "You use tools.", tools = { "word_count", "say" } }
task "count" {
  agent = "worker",
  prompt = [[Count and say.
@@call word_count {"text": "one two three four"} | say {"msg": "hello; rm -rf nothing"}
@@call word_count {"text": "five six"}]],
}
task "after" { agent = "worker", deps = { "count" }, tools = {}, prompt = "Summarise: {{count}}" }
LUA
    tools_lua
  } >"$dir/flow.lua"
  curl -sf -X POST "$SIM_URL/sim/reset" >/dev/null
  run_watched 60 "$proto stream=$stream" "$dir/flow.lua" --out "$dir/out" --state "$dir/state" --json
  expect_rc 0 "$proto stream=$stream"
  cp "$WORK/stdout" "$dir/report.json"
  local out="$dir/out/count.txt"
  grep -q "tool word_count: 4" "$out" || fail "$proto stream=$stream: no word count 4 in: $(cat "$out")"
  grep -q "tool word_count: 2" "$out" || fail "$proto stream=$stream: no second turn's count in: $(cat "$out")"
  grep -q "tool say: exit code 0" "$out" || fail "$proto stream=$stream: no command result in: $(cat "$out")"
  # The model's argument reached echo as one argv item: a shell would have split it.
  grep -qF "hello; rm -rf nothing" "$out" || fail "$proto stream=$stream: the argument was not one argv item"
  [ "$(jqr '.tasks[] | select(.name=="count") | .turns')" = 3 ] ||
    fail "$proto stream=$stream: turns $(jqr '.tasks[] | select(.name=="count") | .turns'), want 3"
  # Parallel calls end in any order.
  [ "$(jqr '[.tasks[] | select(.name=="count") | .tool_calls[] | "\(.turn):\(.name):\(.source):\(.ok)"] | sort | join(",")')" = \
    "1:say:command:true,1:word_count:lua:true,2:word_count:lua:true" ] ||
    fail "$proto stream=$stream: tool calls $(jqr '.tasks[] | select(.name=="count") | .tool_calls')"
  # Every turn is booked: the report's tokens and spend are the simulator's own counts.
  local sim_in sim_out fr_in fr_out
  sim_stats >"$dir/stats.json"
  sim_in=$(jq '.models."tool-model".input_tokens' "$dir/stats.json")
  sim_out=$(jq '.models."tool-model".output_tokens' "$dir/stats.json")
  fr_in=$(jqr '[.tasks[].tokens.input] | add')
  fr_out=$(jqr '[.tasks[].tokens.output] | add')
  [ "$sim_in" = "$fr_in" ] && [ "$sim_out" = "$fr_out" ] ||
    fail "$proto stream=$stream: flowrun counted $fr_in/$fr_out tokens, the simulator served $sim_in/$sim_out"
  awk -v i="$sim_in" -v o="$sim_out" -v c="$(jqr .cost_usd)" \
    'BEGIN { want = (i * 3.0 + o * 15.0) / 1e6; d = want - c; if (d < 0) d = -d; exit !(d < 1e-9) }' ||
    fail "$proto stream=$stream: cost $(jqr .cost_usd) is not the simulator's usage x price"
  [ "$(jq '.models."tool-model".requests' "$dir/stats.json")" = 4 ] ||
    fail "$proto stream=$stream: $(jq '.models."tool-model".requests' "$dir/stats.json") requests, want 3 turns + 1"
  pass "$proto stream=$stream: the output holds the tools' results, 3 turns booked at the simulator's counts"
}
for proto in openai ollama anthropic; do
  for stream in true false; do run_variant "$proto" "$stream"; done
done

# ---- limits ---------------------------------------------------------------
limits_flow() { # limits_flow FILE TASK-FIELDS PROMPT
  {
    cat <<LUA
workflow { name = "limits" }
endpoint "m" { tier = "local", protocol = "openai", url = "$SIM_URL/v1", model = "limit-model",
               max_parallel = 4 }
agent "worker" { tools = { "word_count", "say", "sleeper", "numbers" } }
task "t" { agent = "worker", retries = 0, $2, prompt = [[$3]] }
LUA
    tools_lua
  } >"$1"
}

curl -sf -X POST "$SIM_URL/sim/reset" >/dev/null
limits_flow "$WORK/turns.lua" "max_turns = 3" '@@forever word_count {"text": "again"}'
run_watched 60 "max_turns" "$WORK/turns.lua" --out "$WORK/o1" --json
expect_rc 1 "a model that never stops, max_turns = 3"
jqr '.tasks[0].reason' | grep -q "max_turns (3)" || fail "reason: $(jqr '.tasks[0].reason')"
[ "$(sim_stats | jq '.models."limit-model".requests')" = 3 ] ||
  fail "max_turns = 3 sent $(sim_stats | jq '.models."limit-model".requests') turns"
[ "$(jqr '.tasks[0].tool_calls | length')" = 2 ] || fail "ran $(jqr '.tasks[0].tool_calls | length') calls, want 2"
pass "max_turns ends a model that never stops calling tools, after exactly 3 turns, no retry"

curl -sf -X POST "$SIM_URL/sim/reset" >/dev/null
limits_flow "$WORK/calls.lua" "max_tool_calls = 4" '@@call word_count {"text": "again"} | word_count {"text": "more"} | word_count {"text": "x"}
@@call word_count {"text": "again"} | word_count {"text": "more"} | word_count {"text": "x"}'
run_watched 60 "max_tool_calls" "$WORK/calls.lua" --out "$WORK/o2" --json
expect_rc 1 "max_tool_calls = 4"
jqr '.tasks[0].reason' | grep -q "max_tool_calls (4)" || fail "reason: $(jqr '.tasks[0].reason')"
[ "$(jqr '.tasks[0].tool_calls | length')" = 3 ] || fail "ran $(jqr '.tasks[0].tool_calls | length') calls, want 3"
pass "max_tool_calls ends the loop before a turn's calls would pass it"

marker="flowrun-hang-$$-$RANDOM"
limits_flow "$WORK/hang.lua" "timeout = 60" "@@call sleeper {\"marker\": \"$marker\"}"
run_watched 60 "a hanging tool" "$WORK/hang.lua" --out "$WORK/o3" --json
expect_rc 0 "a tool that hangs"
grep -Eq "tool sleeper:? error: .*timed out after 1 s" "$WORK/o3/t.txt" || fail "no timeout result: $(cat "$WORK/o3/t.txt")"
[ "$(jqr '.tasks[0].tool_calls[0].ok')" = false ] || fail "the hung call is not marked failed"
! pgrep -f "$marker" >/dev/null || fail "the timed-out command is still running: $(pgrep -af "$marker")"
pass "a tool that hangs times out after its timeout, the model reads why, and the command is gone"

limits_flow "$WORK/cap.lua" "timeout = 60" '@@call numbers {}'
run_watched 60 "output cap" "$WORK/cap.lua" --out "$WORK/o4" --json
expect_rc 0 "a command with a large output"
grep -q "output cut at 1000 bytes" "$WORK/o4/t.txt" || fail "no cap note: $(head -c 300 "$WORK/o4/t.txt")"
grep -q "^100000$" "$WORK/o4/t.txt" && fail "the output past the cap reached the model"
[ "$(jqr '.tasks[0].tool_calls[0].result_bytes')" -lt 1200 ] ||
  fail "result of $(jqr '.tasks[0].tool_calls[0].result_bytes') bytes"
pass "a command tool's output is capped at its output_cap, saying so"

limits_flow "$WORK/unknown.lua" "timeout = 60" '@@call touch {"path": "'"$WORK"'/pwned"}'
run_watched 60 "an unoffered tool" "$WORK/unknown.lua" --out "$WORK/o5" --json
expect_rc 0 "a model calling a tool it was not offered"
grep -Eq "tool touch:? error: .*not offered" "$WORK/o5/t.txt" || fail "no refusal: $(cat "$WORK/o5/t.txt")"
[ ! -e "$WORK/pwned" ] || fail "a tool nobody offered ran"
pass "a model that names a tool it was not offered gets an error result, and nothing runs"

# A turn that fails is retried like an attempt, and the retry on the same
# endpoint goes on with the conversation: the tool does not run again.
cat >"$WORK/flaky.lua" <<LUA
endpoint "m" { tier = "local", protocol = "openai", url = "$SIM_URL/v1", model = "flaky" }
agent "worker" { tools = { "say" } }
task "t" { agent = "worker", prompt = [[Say it.
@@call say {"msg": "once"}]] }
LUA
tools_lua >>"$WORK/flaky.lua"
curl -sf -X POST "$SIM_URL/sim/reset" >/dev/null
run_watched 60 "a failed turn" "$WORK/flaky.lua" --out "$WORK/o7" --json
expect_rc 0 "a turn that fails once"
[ "$(jqr '.tasks[0].attempts')" = 2 ] || fail "attempts $(jqr '.tasks[0].attempts'), want 2"
[ "$(jqr '.tasks[0].tool_calls | length')" = 1 ] || fail "the tool ran $(jqr '.tasks[0].tool_calls | length') times, want once"
[ "$(sim_stats | jq '.models.flaky.requests')" = 3 ] || fail "$(sim_stats | jq '.models.flaky.requests') requests, want 3"
grep -q "tool say: exit code 0" "$WORK/o7/t.txt" || fail "no result: $(cat "$WORK/o7/t.txt")"
pass "a turn that fails (500) is retried on its endpoint with the conversation so far: the tool ran once"

# Another endpoint starts the conversation again: its model never saw the
# first one's turns.
cat >"$WORK/fallback.lua" <<LUA
endpoint "a" { tier = "local", protocol = "openai", url = "$SIM_URL/v1", model = "dying", quality = 0.9 }
endpoint "b" { tier = "local", protocol = "anthropic", url = "$SIM_URL", model = "spare", quality = 0.1 }
agent "worker" { tools = { "say" } }
task "t" { agent = "worker", retries = 1, prompt = [[Say it.
@@call say {"msg": "again"}]] }
LUA
tools_lua >>"$WORK/fallback.lua"
run_watched 60 "a fallback" "$WORK/fallback.lua" --out "$WORK/o11" --json
expect_rc 0 "a fallback mid conversation"
[ "$(jqr '.tasks[0].endpoint')" = b ] || fail "ended on $(jqr '.tasks[0].endpoint'), want b"
[ "$(jqr '.tasks[0].tool_calls | length')" = 2 ] ||
  fail "the tool ran $(jqr '.tasks[0].tool_calls | length') times, want twice (once per conversation)"
[ "$(jqr '.tasks[0].turns')" = 2 ] || fail "turns $(jqr '.tasks[0].turns') on b, want 2"
[ "$(sim_stats | jq '.models.spare.requests')" = 2 ] || fail "b served $(sim_stats | jq '.models.spare.requests') requests, want 2"
pass "a fallback to another endpoint starts the conversation again there (the tool runs again)"

# ---- money across turns ---------------------------------------------------
{
  cat <<LUA
workflow { name = "loop-budget", budget = { usd = 0.02 } }
endpoint "m" { tier = "cloud", protocol = "openai", url = "$SIM_URL/v1", model = "budget-model",
               max_parallel = 20, api_key_env = "SIM_TEST_KEY", price = { input = 10.0, output = 30.0 } }
agent "worker" { tools = { "word_count" } }
LUA
  for i in $(seq 1 20); do
    cat <<LUA
task "t$i" { agent = "worker", max_tokens = 64, prompt = [[Loop $i.
@@call word_count {"text": "a"}
@@call word_count {"text": "b"}
@@call word_count {"text": "c"}
@@call word_count {"text": "d"}]] }
LUA
  done
  tools_lua
} >"$WORK/budget.lua"
curl -sf -X POST "$SIM_URL/sim/reset" >/dev/null
run_watched 120 "budget across turns" "$WORK/budget.lua" --out "$WORK/o6" --json
[ "$RC" -eq 0 ] || [ "$RC" -eq 3 ] || { cat "$WORK/stderr"; fail "budget run: exit $RC"; }
sim_stats >"$WORK/bstats.json"
bin=$(jq '.models."budget-model".input_tokens' "$WORK/bstats.json")
bout=$(jq '.models."budget-model".output_tokens' "$WORK/bstats.json")
awk -v i="$bin" -v o="$bout" 'BEGIN { exit !((i * 10.0 + o * 30.0) / 1e6 <= 0.02 + 1e-12) }' ||
  fail "the simulator served $bin/$bout tokens: over the \$0.02 cap"
awk -v c="$(jqr .cost_usd)" 'BEGIN { exit !(c <= 0.02 + 1e-12) }' || fail "spend $(jqr .cost_usd) over the cap"
[ "$(jqr '[.tasks[].tool_calls | length] | add')" -gt 0 ] || fail "no task got past its first turn"
[ "$(jqr '[.tasks[] | select(.status == "budget")] | length')" -gt 0 ] || fail "the cap stopped no task"
pass "20 tasks looping 5 turns under a \$0.02 run cap: the simulator's own counts cost \$$(awk -v i="$bin" -v o="$bout" 'BEGIN { printf "%.4f", (i * 10.0 + o * 30.0) / 1e6 }'), exit $RC"

# ---- cache and resume -------------------------------------------------------
# A whole answer is cached with the tools it was offered: the same run again
# is answered from the cache (no turn, no tool call); other tool definitions
# are another request; cache = false is never answered from the cache.
cache_flow() { # cache_flow DESCRIPTION CACHE
  {
    cat <<LUA
workflow { name = "tool-cache" }
endpoint "m" { tier = "local", protocol = "openai", url = "$SIM_URL/v1", model = "cache-model" }
agent "worker" { tools = { "say" } }
task "t" { agent = "worker", cache = $2, prompt = [[Say it.
@@call say {"msg": "cached"}]] }
LUA
    tools_lua | sed "s/\"Prints a message\"/\"$1\"/"
  } >"$WORK/cache.lua"
}
cache_run() { # cache_run WHAT: runs the cache workflow, sets CACHED and CALLS
  run_watched 60 "$1" "$WORK/cache.lua" --out "$WORK/o8" --state "$WORK/cache-state" --json
  expect_rc 0 "$1"
  CACHED=$(jqr '.tasks[0].cached')
  CALLS=$(jqr '.tasks[0].tool_calls | length')
}
cache_flow "Prints a message" true
cache_run "first run"
[ "$CACHED/$CALLS" = false/1 ] || fail "first run: cached=$CACHED calls=$CALLS"
cache_run "the same run again"
[ "$CACHED/$CALLS" = true/0 ] || fail "the same run again: cached=$CACHED calls=$CALLS, want an answer from the cache"
grep -q "tool say: exit code 0" "$WORK/o8/t.txt" || fail "the cached output lost the tool's result"
cache_flow "Prints a message, loudly" true
cache_run "other tool definitions"
[ "$CACHED/$CALLS" = false/1 ] || fail "other tool definitions: cached=$CACHED calls=$CALLS, want a new request"
cache_flow "Prints a message, loudly" false
cache_run "cache = false"
[ "$CACHED/$CALLS" = false/1 ] || fail "cache = false: cached=$CACHED calls=$CALLS"
pass "a tool task's answer is cached with its tool definitions: other definitions ask again, cache = false always asks"

# ---- routing: task.tools, and endpoints that cannot call tools --------------
cat >"$WORK/route_policy.lua" <<'LUA'
return {
  route = function(task, candidates, run)
    local want = task.tools > 0 and "toolbox" or "plain"
    for _, c in ipairs(candidates) do if c.name == want then return c end end
    return nil
  end,
}
LUA
{
  cat <<LUA
workflow { name = "tool-route", policy = "$WORK/route_policy.lua" }
endpoint "nocalls" { tier = "local", protocol = "openai", url = "$SIM_URL/v1", model = "r1", tools = false }
endpoint "toolbox" { tier = "local", protocol = "openai", url = "$SIM_URL/v1", model = "r2" }
endpoint "plain" { tier = "local", protocol = "openai", url = "$SIM_URL/v1", model = "r3" }
agent "worker" {}
task "with" { agent = "worker", tools = { "say" }, prompt = [[Say.
@@call say {"msg": "routed"}]] }
task "without" { agent = "worker", prompt = "REPLY: plain" }
LUA
  tools_lua
} >"$WORK/route.lua"
run_watched 60 "routing by task.tools" "$WORK/route.lua" --out "$WORK/o9" --json
expect_rc 0 "routing by task.tools"
[ "$(jqr '[.tasks[] | "\(.name)=\(.endpoint)"] | join(",")')" = "with=toolbox,without=plain" ] ||
  fail "routed $(jqr '[.tasks[] | "\(.name)=\(.endpoint)"] | join(",")')"
jqr '.tasks[] | select(.name=="with") | .decisions[0].candidates[].name' | grep -q nocalls &&
  fail "an endpoint with tools = false was a candidate for a task with tools"
pass "the policy sees task.tools; an endpoint with tools = false is no candidate for a task with tools"

# ---- privacy: a private task's conversation stays local ---------------------
{
  cat <<LUA
workflow { name = "tool-private" }
endpoint "cloud" { tier = "cloud", protocol = "openai", url = "$SIM_URL/v1", model = "pc",
                   api_key_env = "SIM_TEST_KEY", price = { input = 0.1, output = 0.1 }, max_parallel = 4 }
endpoint "box" { tier = "local", protocol = "openai", url = "$SIM_URL/v1", model = "pl" }
agent "worker" { tools = { "say" } }
task "secret" { agent = "worker", private = true, prompt = [[Say the secret.
@@call say {"msg": "the vault code"}]] }
task "next" { agent = "worker", deps = { "secret" }, prompt = [[Go on from {{secret}}
@@call say {"msg": "more"}]] }
LUA
  tools_lua
} >"$WORK/private.lua"
curl -sf -X POST "$SIM_URL/sim/reset" >/dev/null
run_watched 60 "a private task with tools" "$WORK/private.lua" --out "$WORK/o10" --json --policy cost
expect_rc 0 "a private task with tools"
[ "$(jqr '[.tasks[] | "\(.name)=\(.tier)"] | join(",")')" = "secret=local,next=local" ] ||
  fail "private tool tasks ran on $(jqr '[.tasks[] | "\(.name)=\(.tier)"] | join(",")')"
[ "$(sim_stats | jq '.models.pc.requests // 0')" = 0 ] || fail "a turn of a private conversation reached the cloud"
pass "a private task's turns and tool results stay local, and so does the dependent that reads them"
