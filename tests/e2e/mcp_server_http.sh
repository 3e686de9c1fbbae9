#!/usr/bin/env bash
# flowrun as an MCP server over Streamable HTTP (`flowrun mcp --http`),
# driven by the official TypeScript SDK's client (tests/mcp/sdk_client.mjs,
# installed by tests/deps.sh) against flowrun-sim: initialize and the tools
# with their schemas; run_task and run_workflow answer what the simulator
# said, with the simulator's request counts; progress notifications come
# over SSE; a tool error is a result with isError; cancelling a call (the
# SDK's notifications/cancelled, and a client that drops its connection)
# ends the run's child, checked in the process table; the server survives
# malformed requests; with a token set a request without it is refused
# (401) and one with it served, by the SDK (2025-11-25, a session) and by
# flowrun's own MCP client (2026-07-28, stateless); off loopback without
# the token variable `flowrun mcp` refuses to start (78). SIGTERM with a
# call in flight ends the child, then the server (exit 0).
source "$(dirname "$0")/lib.bash"
SDK="$SRC/tests/mcp/node_modules/@modelcontextprotocol/sdk/package.json"
[ -f "$SDK" ] || fail "the MCP SDK is not installed: run tests/deps.sh"
command -v node >/dev/null || fail "node is not installed: run tests/deps.sh"
CLIENT="$SRC/tests/mcp/sdk_client.mjs"
start_sim --latency 0 --tps 0 --model slow:latency=600000

MARK="mcphttp-$$-$RANDOM"
cat >"$WORK/endpoints.lua" <<LUA
endpoint "local" { tier = "local", url = "$SIM_URL/v1", model = "fast", max_parallel = 4 }
LUA
cat >"$WORK/flow.lua" <<'LUA'
workflow { name = "two-step" }
agent "a" { system = "be brief" }
task "draft" { agent = "a", prompt = "REPLY: first draft" }
task "final" { agent = "a", deps = { "draft" }, prompt = "REPLY: final text" }
LUA
cat >"$WORK/hang-$MARK.lua" <<LUA
workflow { name = "hang" }
endpoint "slow" { tier = "local", url = "$SIM_URL/v1", model = "slow", max_parallel = 1 }
agent "a" { system = "be brief" }
task "wait" { agent = "a", endpoint = "slow", prompt = "this reply never comes" }
LUA

SERVER_PID=""
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
trap 'r=$?; stop_server; set +e; (exit $r); cleanup' EXIT
# start_server [ENV=VALUE...] -- [flowrun mcp options]: sets URL.
start_server() {
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  : >"$WORK/server.err"
  env "${envs[@]}" "$FLOWRUN" mcp --http 127.0.0.1:0 --endpoints "$WORK/endpoints.lua" \
    --state "$WORK/state" "$@" 2>"$WORK/server.err" &
  SERVER_PID=$!
  for _ in $(seq 200); do
    URL=$(grep -o 'http://127.0.0.1:[0-9]*/mcp' "$WORK/server.err" || true)
    [ -n "$URL" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$WORK/server.err" >&2
  fail "flowrun mcp --http did not start"
}
# sdk SCENARIO [TOKEN]: tests/mcp/sdk_client.mjs over HTTP; its JSON in $WORK/sdk.json.
sdk() {
  timeout 120 node "$CLIENT" "$1" http "$URL" ${2:+"$2"} >"$WORK/sdk.json" 2>"$WORK/sdk.err"
}
sdk_ok() { sdk "$@" || { cat "$WORK/sdk.err" >&2; fail "sdk_client $1 exited with $?"; }; }
sj() { jq -r "$1" "$WORK/sdk.json"; }

start_server --
sdk_ok list
[ "$(sj .server)" = flowrun ] || fail "serverInfo.name: $(sj .server)"
[ "$(sj .protocolVersion)" = 2025-11-25 ] || fail "revision: $(sj .protocolVersion)"
[ "$(sj '[.tools[].name] | join(" ")')" = "run_task run_workflow plan_workflow spend approve" ] ||
  fail "tools: $(sj '[.tools[].name] | join(" ")')"
[ "$(sj '[.tools[] | select(.type == "object")] | length')" = 5 ] || fail "input schemas"
[ "$(sj '.tools[0].required | join(",")')" = prompt ] || fail "run_task's required"
[ "$(sj '.tools[1].properties | index("path")')" != null ] || fail "run_workflow's properties"
pass "initialize over HTTP, the five tools listed with their schemas"

PROMPT="REPLY: hello from the sim" sdk_ok run_task
[ "$(sj .result.isError)" = false ] || fail "run_task failed: $(cat "$WORK/sdk.json")"
[ "$(sj '.result.structuredContent.outputs[].text')" = "hello from the sim" ] ||
  fail "run_task's output: $(cat "$WORK/sdk.json")"
[ "$(sj '.result.structuredContent.tasks[0].endpoint')" = local ] || fail "run_task's endpoint"
[ "$(sim_requests fast)" = 1 ] || fail "run_task sent $(sim_requests fast) requests"
pass "run_task returns the simulator's reply and where it ran (1 request)"

WORKFLOW="$WORK/flow.lua" sdk_ok run_workflow
[ "$(sj .result.isError)" = false ] || fail "run_workflow failed: $(cat "$WORK/sdk.json")"
[ "$(sj .result.structuredContent.outputs.final.text)" = "final text" ] ||
  fail "run_workflow's final output: $(cat "$WORK/sdk.json")"
[ "$(sj '[.result.structuredContent.tasks[].status] | join(",")')" = ok,ok ] ||
  fail "run_workflow's tasks: $(cat "$WORK/sdk.json")"
[ "$(sj '.progress | length')" -ge 2 ] || fail "no progress over SSE: $(cat "$WORK/sdk.json")"
[ "$(sim_requests fast)" = 3 ] || fail "run_workflow sent $(( $(sim_requests fast) - 1 )) requests, not 2"
pass "run_workflow: both tasks ok, the final output, $(sj '.progress | length') progress notifications over SSE"

WORKFLOW=/nonexistent/flow.lua sdk_ok error
[ "$(sj .result.isError)" = true ] || fail "no isError: $(cat "$WORK/sdk.json")"
pass "a tool error is a result with isError"

WORKFLOW="$WORK/hang-$MARK.lua" sdk_ok cancel
[ "$(sj .child_gone)" = true ] || fail "the child outlived the cancellation: $(cat "$WORK/sdk.json")"
! pgrep -f "[h]ang-$MARK" >/dev/null || fail "a child of the cancelled run is still running"
[ "$(sj .tools_after)" = 5 ] || fail "the server stopped serving after a cancellation"
pass "the SDK's cancellation ends the run (child pids $(sj '.child_pids | join(" ")') gone)"

# A client that drops its connection mid-call: raw HTTP, then the socket closes.
sid=$(curl -s -D - -o /dev/null -X POST "$URL" -H 'Content-Type: application/json' \
  -H 'Accept: application/json, text/event-stream' \
  -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}' |
  tr -d '\r' | sed -n 's/^mcp-session-id: //Ip')
[ -n "$sid" ] || fail "raw initialize gave no session"
printf '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"run_workflow","arguments":{"path":"%s"}}}' \
  "$WORK/hang-$MARK.lua" >"$WORK/call.json" # a file: the marker stays out of curl's argv
curl -s -N -X POST "$URL" -H 'Content-Type: application/json' -H "Mcp-Session-Id: $sid" \
  -H 'Accept: application/json, text/event-stream' -d @"$WORK/call.json" >/dev/null &
CURL_PID=$!
for _ in $(seq 400); do pgrep -f "[h]ang-$MARK" >/dev/null && break; sleep 0.05; done
pgrep -f "[h]ang-$MARK" >/dev/null || fail "the dropped call's child never started"
kill "$CURL_PID"
wait "$CURL_PID" 2>/dev/null || true
for _ in $(seq 400); do pgrep -f "[h]ang-$MARK" >/dev/null || break; sleep 0.05; done
! pgrep -f "[h]ang-$MARK" >/dev/null || fail "the child outlived its dropped connection"
pass "a client that drops the connection of a call in flight ends its run"

port=${URL#http://127.0.0.1:}
port=${port%/mcp}
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'NOT AN HTTP REQUEST\r\n\r\n' >&3
read -r status_line <&3 || true
exec 3<&-
[[ "$status_line" == "HTTP/1.1 400 "* ]] || fail "malformed request: '$status_line'"
code=$(curl -s -o "$WORK/bad.json" -w '%{http_code}' -X POST "$URL" \
  -H 'Content-Type: application/json' --data '{"jsonrpc": "2.0", "id": 1, "method": ')
[ "$code" = 400 ] && [ "$(jq .error.code "$WORK/bad.json")" = -32700 ] ||
  fail "truncated JSON: $code $(cat "$WORK/bad.json")"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL" -H 'Content-Type: application/json' \
  -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' a)" --data '{}')
[ "$code" = 431 ] || fail "oversized head: $code"
sdk_ok list
kill -0 "$SERVER_PID" || fail "the server died"
pass "malformed, truncated and oversized requests get 400/400/431 and the server goes on"

# SIGTERM with a call in flight: the child ends, then the server, with 0.
curl -s -N -X POST "$URL" -H 'Content-Type: application/json' -H "Mcp-Session-Id: $sid" \
  -H 'Accept: application/json, text/event-stream' -d @"$WORK/call.json" >/dev/null &
CURL_PID=$!
for _ in $(seq 400); do pgrep -f "[h]ang-$MARK" >/dev/null && break; sleep 0.05; done
pgrep -f "[h]ang-$MARK" >/dev/null || fail "the last call's child never started"
kill -TERM "$SERVER_PID"
set +e
wait "$SERVER_PID"
rc=$?
set -e
SERVER_PID=""
wait "$CURL_PID" 2>/dev/null || true
[ "$rc" = 0 ] || fail "SIGTERM: the server exited $rc: $(cat "$WORK/server.err")"
! pgrep -f "[h]ang-$MARK" >/dev/null || fail "a child outlived the server"
! grep -q "handles left open" "$WORK/server.err" || fail "handles left open at exit"
pass "SIGTERM with a call in flight ends its child and the server (exit 0, every handle closed)"

TOKEN="tok-$RANDOM-$RANDOM-secret"
start_server FLOWRUN_MCP_TOKEN="$TOKEN" --
grep -q "bearer token required" "$WORK/server.err" || fail "the server does not say a token is required"
sdk list && fail "a client without the token was served: $(cat "$WORK/sdk.json")"
grep -q "Unauthorized" "$WORK/sdk.err" || fail "not refused as unauthorized: $(cat "$WORK/sdk.err")"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL" -H 'Content-Type: application/json' \
  --data '{}')
[ "$code" = 401 ] || fail "no token: $code"
code=$(curl -s -D "$WORK/h401" -o /dev/null -w '%{http_code}' -X POST "$URL" \
  -H 'Content-Type: application/json' -H 'Authorization: Bearer wrong' --data '{}')
[ "$code" = 401 ] && grep -qi '^WWW-Authenticate: Bearer' "$WORK/h401" || fail "wrong token: $code"
sdk_ok list "$TOKEN"
[ "$(sj '.tools | length')" = 5 ] || fail "with the token: $(cat "$WORK/sdk.json")"
# 2026-07-28 (stateless, the mirrored headers), which this SDK does not
# speak: flowrun's own MCP client, the token from headers_env.
cat >"$WORK/uses-http.lua" <<LUA
workflow { name = "uses-http" }
mcp "flowrun" { url = "$URL", headers_env = { Authorization = "FR_AUTH" } }
agent "a" { tools = { "flowrun.*" } }
task "t" { agent = "a", prompt = "x" }
LUA
FR_AUTH="Bearer $TOKEN" run_flowrun tools "$WORK/uses-http.lua" --endpoints "$WORK/endpoints.lua" \
  --json
expect_rc 0 "flowrun tools on flowrun mcp --http"
[ "$(jqr '[.[].revision] | unique | join(",")')" = 2026-07-28 ] || fail "revision: $(jqr '[.[].revision]')"
[ "$(jqr 'length')" = 5 ] || fail "flowrun's client listed $(jqr 'length') tools over HTTP"
stop_server
! grep -qF "$TOKEN" "$WORK/server.err" || fail "the token appears in the server's log"
pass "with a token set, requests without it get 401 (WWW-Authenticate), with it are served (2025-11-25 by the SDK, 2026-07-28 by flowrun's own client)"

set +e
FLOWRUN_MCP_TOKEN= timeout 20 "$FLOWRUN" mcp --http 0.0.0.0:0 2>"$WORK/err78"
rc=$?
MY_TOKEN= timeout 20 "$FLOWRUN" mcp --http 0.0.0.0:0 --token-env MY_TOKEN 2>"$WORK/err78b"
rc2=$?
set -e
[ "$rc" = 78 ] && grep -q FLOWRUN_MCP_TOKEN "$WORK/err78" || fail "off loopback: $rc $(cat "$WORK/err78")"
[ "$rc2" = 78 ] && grep -q MY_TOKEN "$WORK/err78b" || fail "--token-env: $rc2 $(cat "$WORK/err78b")"
pass "off loopback without the token variable, flowrun mcp refuses to start (78, naming it)"
