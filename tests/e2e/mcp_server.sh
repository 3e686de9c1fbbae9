#!/usr/bin/env bash
# flowrun as an MCP server over stdio (`flowrun mcp`), driven by the
# official TypeScript SDK's client (tests/mcp/sdk_client.mjs, installed by
# tests/deps.sh) against flowrun-sim: tools listed with schemas, run_task
# and run_workflow answered from the simulator (its request counts),
# progress notifications, a failing workflow as isError, cancellation (the
# child leaves the process table, the server keeps serving), a malformed
# line that does not end the server; and the 2026-07-28 revision, which
# this SDK does not speak, through raw lines and through flowrun's own MCP
# client (`flowrun tools` on a workflow that uses `flowrun mcp`).
source "$(dirname "$0")/lib.bash"
SDK="$SRC/tests/mcp/node_modules/@modelcontextprotocol/sdk/package.json"
[ -f "$SDK" ] || fail "the MCP SDK is not installed: run tests/deps.sh"
command -v node >/dev/null || fail "node is not installed: run tests/deps.sh"
CLIENT="$SRC/tests/mcp/sdk_client.mjs"
start_sim --latency 5 --tps 0 --model "slow:latency=600000" --record "$WORK/requests.jsonl"


cat >"$WORK/endpoints.lua" <<LUA
endpoint "local-qwen" { tier = "local", url = "$SIM_URL/v1", model = "m", max_parallel = 4 }
LUA
cat >"$WORK/slow-endpoints.lua" <<LUA
endpoint "slow" { tier = "local", url = "$SIM_URL/v1", model = "slow", max_parallel = 1 }
LUA
cat >"$WORK/wf.lua" <<'LUA'
workflow { name = "mcp-e2e" }
agent "a" { }
task "design" { agent = "a", prompt = "design" }
task "impl"   { agent = "a", deps = { "design" }, prompt = "impl {{design}}" }
task "tests"  { agent = "a", deps = { "design" }, prompt = "tests {{design}}" }
task "review" { agent = "a", deps = { "impl", "tests" }, prompt = "review {{impl}} {{tests}}" }
LUA
printf 'workflow { name = "broken" }\ntask "x" {\n  prompt = = "no"\n}\n' >"$WORK/broken.lua"
printf 'workflow { name = "slow" }\nagent "a" { }\ntask "wait_%s" { agent = "a", prompt = "wait" }\n' $$ \
  >"$WORK/slow-$$.lua"

SERVER=("$FLOWRUN" mcp --endpoints "$WORK/endpoints.lua" --state "$WORK/state")
sdk() { # sdk SCENARIO [stdio COMMAND...]: the client's JSON in $WORK/sdk.json
  local scenario=$1
  shift
  timeout 120 node "$CLIENT" "$scenario" stdio "$@" >"$WORK/sdk.json" 2>"$WORK/sdk.err" ||
    { cat "$WORK/sdk.err" >&2; fail "sdk_client $scenario exited with $?"; }
  leak_check "$WORK/sdk.json" "$WORK/sdk.err" || fail "$scenario: the sentinel key leaked"
}
sj() { jq -r "$1" "$WORK/sdk.json"; }

# ---- tools listed, with schemas ---------------------------------------------
sdk list "${SERVER[@]}"
[ "$(sj .server)" = flowrun ] || fail "serverInfo.name: $(sj .server)"
[ "$(sj '[.tools[].name] | join(" ")')" = "run_task run_workflow plan_workflow spend approve" ] ||
  fail "tools: $(sj '[.tools[].name] | join(" ")')"
[ "$(sj '[.tools[] | select(.type == "object")] | length')" = 5 ] || fail "input schemas"
[ "$(sj '.tools[0].required | join(",")')" = prompt ] || fail "run_task's required"
[ "$(sj '.tools[0].properties | join(",")')" = "prompt,system,complexity,private,schema,max_tokens" ] ||
  fail "run_task's properties: $(sj '.tools[0].properties | join(",")')"
[ "$(sj '.tools[4].properties | join(",")')" = "workflow,task,decision,note" ] || fail "approve's"
pass "the SDK client initializes and lists 5 tools with their schemas"

# ---- run_task ---------------------------------------------------------------
PROMPT=$'Say "hi" {{not a placeholder}} ]] \\ end\n\ttab, caf\u00e9' sdk run_task "${SERVER[@]}"
[ "$(sj .result.isError)" = false ] || { cat "$WORK/sdk.json"; fail "run_task isError"; }
[ "$(sj '.result.structuredContent.tasks[0] | "\(.name) \(.status) \(.endpoint) \(.tier)"')" = \
  "answer ok local-qwen local" ] || fail "run_task: $(sj .result.structuredContent.tasks)"
sj .result.structuredContent.outputs.answer.text | grep -q . || fail "run_task: no output"
[ "$(sim_requests m)" = 1 ] || fail "run_task sent $(sim_requests m) requests, expected 1"
# The prompt reached the model byte for byte: quoting, braces, newline, UTF-8.
want=$(jq -cn --arg p $'Say "hi" {{not a placeholder}} ]] \\ end\n\ttab, caf\u00e9' '$p')
[ "$(jq -c '.body.messages[-1].content' "$WORK/requests.jsonl" | head -1)" = "$want" ] ||
  fail "the prompt sent: $(head -c 400 "$WORK/requests.jsonl"), expected $want"
pass "run_task: one request with the prompt as written, ran on local-qwen, its output inline"

# ---- run_workflow with progress -------------------------------------------------
WORKFLOW="$WORK/wf.lua" sdk run_workflow "${SERVER[@]}"
[ "$(sj .result.isError)" = false ] || { cat "$WORK/sdk.json"; fail "run_workflow isError"; }
[ "$(sj '[.result.structuredContent.tasks[] | "\(.name)=\(.status)"] | join(" ")')" = \
  "design=ok impl=ok tests=ok review=ok" ] || fail "run_workflow tasks"
[ "$(sj '.result.structuredContent.outputs | keys | join(",")')" = review ] ||
  fail "outputs of: $(sj '.result.structuredContent.outputs | keys | join(",")')"
[ "$(sim_requests m)" = 5 ] || fail "the simulator got $(sim_requests m) requests, expected 5"
# Counted as they came on the wire, before the result (none after it).
[ "$(sj '.progress | length')" = 4 ] || fail "progress notifications: $(sj .progress)"
[ "$(sj .progress_after_result)" = 0 ] || fail "progress notifications after the result"
[ "$(sj '[.progress[].progress] | join(",")')" = "1,2,3,4" ] || fail "progress values"
[ "$(sj '[.progress[].total] | unique | join(",")')" = 4 ] || fail "progress totals"
[ "$(sj '.progress[0].message')" = "design ok on local-qwen" ] || fail "progress message"
pass "run_workflow: 4 tasks ok, 4 requests, 4 progress notifications, only review's output"

# ---- run_task with a schema, plan_workflow, spend --------------------------------------
TOOL=run_task ARGS='{"prompt":"list the files","system":"be brief","private":true,"complexity":0.2,"max_tokens":64,"schema":{"type":"object","required":["files"],"properties":{"files":{"type":"array","items":{"type":"string"}}}}}' \
  sdk call "${SERVER[@]}"
[ "$(sj .result.isError)" = false ] || { cat "$WORK/sdk.json"; fail "run_task with a schema"; }
[ "$(sj '.result.structuredContent.outputs.answer.json.files | type')" = array ] ||
  fail "run_task's JSON output: $(sj .result.structuredContent.outputs)"
[ "$(sim_requests m)" = 6 ] || fail "the simulator got $(sim_requests m) requests, expected 6"
TOOL=plan_workflow ARGS="{\"path\":\"$WORK/wf.lua\"}" sdk call "${SERVER[@]}"
[ "$(sj '.result.structuredContent | "\(.status) \([.tasks[].endpoint] | unique | join(","))"')" = \
  "planned local-qwen" ] || fail "plan_workflow: $(sj .result.structuredContent)"
[ "$(sim_requests m)" = 6 ] || fail "plan_workflow sent requests"
TOOL=spend ARGS='{}' sdk call "${SERVER[@]}"
[ "$(sj '[.result.structuredContent.months[].attempts] | add')" = 6 ] ||
  fail "spend: $(sj .result.structuredContent)"
pass "run_task with a schema returns its JSON; plan_workflow sends nothing; spend counts the 6 attempts"

# ---- a checkpoint through the server: waiting, the approve tool, the rerun --------
cat >"$WORK/gate.lua" <<'LUA'
workflow { name = "mcp-gate" }
agent "a" { }
task "design" { agent = "a", prompt = "gate design", approve = true }
task "build"  { agent = "a", deps = { "design" }, prompt = "gate build {{design}}" }
LUA
before=$(sim_requests m)
TOOL=run_workflow ARGS="{\"path\":\"$WORK/gate.lua\"}" sdk call "${SERVER[@]}"
[ "$(sj .result.isError)" = false ] || fail "a run waiting for an approval is an error: $(sj .result)"
[ "$(sj '.result.structuredContent | "\(.status) \(.exit_code)"')" = "waiting 4" ] ||
  fail "waiting run: $(sj .result.structuredContent)"
[ "$(sj '.result.structuredContent.tasks[] | select(.name == "design") | .approval.state')" = pending ] ||
  fail "the pending approval is not in the result: $(sj .result.structuredContent.tasks)"
[ "$(sim_requests m)" = $((before + 1)) ] || fail "build was sent before the approval"
TOOL=approve ARGS="{\"workflow\":\"$WORK/gate.lua\",\"task\":\"design\",\"decision\":\"approve\",\"note\":\"via mcp\"}" \
  sdk call "${SERVER[@]}"
[ "$(sj .result.isError)" = false ] || fail "the approve tool: $(sj .result)"
TOOL=run_workflow ARGS="{\"path\":\"$WORK/gate.lua\"}" sdk call "${SERVER[@]}"
[ "$(sj '.result.structuredContent | "\(.status) \(.exit_code)"')" = "ok 0" ] ||
  fail "the rerun after approve: $(sj .result.structuredContent)"
[ "$(sj '.result.structuredContent.tasks[] | select(.name == "design") | .approval | "\(.state) \(.note)"')" = \
  "approved via mcp" ] || fail "the approval in the rerun's result"
[ "$(sim_requests m)" = $((before + 2)) ] || fail "the rerun sent $(( $(sim_requests m) - before - 1 )) requests, expected only build's"
pass "run_workflow waits at a checkpoint (exit 4, not isError), the approve tool records it, the rerun sends only build"

# ---- a workflow that does not load: isError with its message ----------------------
WORKFLOW="$WORK/broken.lua" sdk error "${SERVER[@]}"
[ "$(sj .result.isError)" = true ] || fail "a broken workflow is not isError"
sj '.result.content[0].text' | grep -q "broken.lua:3" || fail "no file:line: $(sj .result.content)"
sj '.result.content[0].text' | grep -q "exited with 65" || fail "no exit code"
pass "a workflow that does not load is an isError result with its file:line"

# ---- cancellation ---------------------------------------------------------------
WORKFLOW="$WORK/slow-$$.lua" SIM_URL=$SIM_URL SIM_MODEL=slow sdk cancel "$FLOWRUN" mcp --endpoints "$WORK/slow-endpoints.lua" \
  --state "$WORK/state"
[ "$(sj '.child_pids | length')" -ge 1 ] || fail "the slow run's child was never seen"
[ "$(sj .child_gone)" = true ] && [ "$(sj .tools_after)" = 5 ] || fail "after the cancel"
sj .aborted | grep -q . || fail "the call was not aborted"
[ "$(sim_requests slow)" = 1 ] || fail "the slow model got $(sim_requests slow) requests"
pass "cancelled: the child run left the process table, the server still lists its tools"

# ---- malformed lines (raw: no SDK sends them) --------------------------------------
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}'
LINES=$(jq -cn --arg i "$INIT" '["this is not json", "{\"jsonrpc\":\"2.0\",\"id\":", $i,
  "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"no/such\"}", "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\"}"]') \
  EXPECT=5 sdk raw_stdio "${SERVER[@]}"
[ "$(sj '[.messages[] | .error.code // "ok"] | join(",")')" = "-32700,-32700,ok,-32601,ok" ] ||
  fail "raw replies: $(sj '[.messages[] | .error.code // "ok"] | join(",")')"
[ "$(sj '.messages[4].result.tools | length')" = 5 ] || fail "tools/list after malformed lines"
[ "$(sj .exit)" = 0 ] || fail "the server exited with $(sj .exit) at the end of its input"
pass "malformed lines get -32700, an unknown method -32601, the server goes on and exits 0 at EOF"

# A line over 16 MiB is answered and skipped; the next one is served.
{ head -c $((17 << 20)) /dev/zero | tr '\0' x; printf '\n%s\n' '{"jsonrpc":"2.0","id":9,"method":"ping"}'; } |
  "${SERVER[@]}" >"$WORK/big.out" 2>"$WORK/big.err" || fail "a long line: exit $?"
[ "$(jq -c '[.error.code // .id]' "$WORK/big.out" | tr -d '\n')" = "[-32700][9]" ] ||
  fail "a long line: $(head -c 300 "$WORK/big.out")"
pass "a line over 16 MiB gets -32700 and the next line is served"

# ---- 2026-07-28: raw lines ----------------------------------------------------------
M='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}'
LINES=$(jq -cn --arg m "$M" '[
  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server/discover\",\"params\":{\($m)}}",
  "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"run_workflow\",\"arguments\":{\"path\":\"wf.lua\"},\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\",\"progressToken\":7}}}",
  "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\",\"params\":{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"1999-01-01\"}}}"]') \
  EXPECT=3 sdk raw_stdio "${SERVER[@]}"
[ "$(sj '.messages[] | select(.id == 1) | .result.supportedVersions | join(",")')" = 2026-07-28 ] ||
  fail "server/discover"
[ "$(sj '.messages[] | select(.id == 2) | .result | "\(.resultType) \(.structuredContent.status)"')" = \
  "complete ok" ] || fail "2026-07-28 tools/call: $(sj '.messages[] | select(.id == 2)')"
[ "$(sj '[.messages[] | select(.method == "notifications/progress")] | length')" = 4 ] ||
  fail "2026-07-28 progress"
[ "$(sj '.messages[] | select(.id == 3) | "\(.error.code) \(.error.data.supported | join(","))"')" = \
  "-32022 2026-07-28" ] || fail "an unsupported version"
pass "2026-07-28: server/discover, a tools/call with no initialize, progress, -32022"

# ---- 2026-07-28 through flowrun's own MCP client ---------------------------------
cat >"$WORK/uses-flowrun.lua" <<LUA
workflow { name = "uses-flowrun" }
mcp "flowrun" { command = { "$FLOWRUN", "mcp", "--endpoints", "$WORK/endpoints.lua", "--state", "$WORK/state" } }
agent "a" { tools = { "flowrun.*" } }
task "t" { agent = "a", prompt = "x" }
LUA
run_flowrun tools "$WORK/uses-flowrun.lua" --endpoints "$WORK/endpoints.lua" --json
expect_rc 0 "flowrun tools on flowrun mcp"
[ "$(jqr '[.[].revision] | unique | join(",")')" = 2026-07-28 ] || fail "revision: $(jqr '[.[].revision]')"
[ "$(jqr 'length')" = 5 ] || fail "flowrun's client listed $(jqr 'length') tools"
pass "flowrun's own MCP client speaks 2026-07-28 to flowrun mcp and lists its 5 tools"

# ---- the end of input, and SIGTERM, with a run in flight ---------------------------
# The server stops the run (SIGTERM to its group), waits for it, and exits 0;
# stdout has the initialize response only: no reply to the stopped call.
poll_pgrep() { # poll_pgrep yes|no PATTERN: until a process matches (yes) or none (no)
  local i
  for i in $(seq 600); do
    if pgrep -f "$2" >/dev/null; then [ "$1" = yes ] && return 0; else [ "$1" = no ] && return 0; fi
    sleep 0.05
  done
  return 1
}
CALL="{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"run_workflow\",\"arguments\":{\"path\":\"$WORK/slow-$$.lua\"}}}"
for how in eof sigterm; do
  mkfifo "$WORK/in-$how"
  "$FLOWRUN" mcp --endpoints "$WORK/slow-endpoints.lua" --state "$WORK/state" \
    <"$WORK/in-$how" >"$WORK/out-$how" 2>"$WORK/err-$how" &
  pid=$!
  exec {fd}>"$WORK/in-$how"
  printf '%s\n' "$INIT" "$CALL" >&"$fd"
  poll_pgrep yes "slow-$$.lua" || fail "$how: the run never started"
  if [ "$how" = eof ]; then exec {fd}>&-; else kill -TERM "$pid"; fi
  set +e
  wait "$pid"
  rc=$?
  set -e
  [ "$how" = eof ] || exec {fd}>&-
  [ "$rc" = 0 ] || { cat "$WORK/err-$how" >&2; fail "$how: flowrun mcp exited with $rc"; }
  ! pgrep -f "slow-$$.lua" >/dev/null || fail "$how: a child outlived the server"
  [ "$(wc -l <"$WORK/out-$how")" = 1 ] && [ "$(jq -r .id "$WORK/out-$how")" = 1 ] ||
    fail "$how: stdout: $(cat "$WORK/out-$how")"
  pass "$how with a run in flight: the child is stopped first, exit 0, no reply to it"
done

# Standard input that is a file or a device, not a pipe: a clear error and
# exit 74, never an abort (libuv cannot poll a file).
printf '%s\n' "$INIT" >"$WORK/requests.jsonl"
for input in /dev/null "$WORK/requests.jsonl"; do
  set +e
  "$FLOWRUN" mcp --endpoints "$WORK/endpoints.lua" --state "$WORK/state" <"$input" \
    >"$WORK/out-file" 2>"$WORK/err-file"
  rc=$?
  set -e
  [ "$rc" = 74 ] || fail "stdin $input: exit $rc, want 74: $(cat "$WORK/err-file")"
  grep -q "standard input is not a pipe" "$WORK/err-file" && grep -q "| flowrun mcp" "$WORK/err-file" ||
    fail "stdin $input: the message says to pipe it: $(cat "$WORK/err-file")"
done
pass "standard input from a file or /dev/null: exit 74, saying to pipe it"

# A shared store's URL as the state: the runs' work folder is ./.flowrun/mcp,
# not a folder named after the URL.
mkdir -p "$WORK/url-cwd"
(cd "$WORK/url-cwd" && printf '%s\n' "$INIT" |
  FLOWRUN_STATE="postgresql://flowrun@127.0.0.1:1/flowrun" "$FLOWRUN" mcp \
    --endpoints "$WORK/endpoints.lua" >"$WORK/out-url" 2>"$WORK/err-url") ||
  fail "flowrun mcp with FLOWRUN_STATE=URL: $(cat "$WORK/err-url")"
[ -d "$WORK/url-cwd/.flowrun/mcp" ] && [ ! -e "$WORK/url-cwd/postgresql:" ] ||
  fail "the work folder under a URL state: $(cd "$WORK/url-cwd" && find . -maxdepth 3)"
pass "FLOWRUN_STATE=URL: the MCP runs' work folder is ./.flowrun/mcp"
