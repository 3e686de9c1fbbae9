#!/usr/bin/env bash
# flowrun as an MCP server over Streamable HTTP (`flowrun mcp --http`),
# driven by the official TypeScript SDK's client (tests/mcp/node_modules,
# installed by tests/deps.sh) against flowrun-sim: initialize and the tools
# with their schemas; run_task and run_workflow answer what the simulator
# said, with the simulator's request counts; progress notifications come
# over SSE; a tool error is a result with isError; cancelling a call (the
# SDK's notifications/cancelled, and a client that drops its connection)
# ends the run's child, checked in the process table; the server survives
# malformed requests; with a token set a request without it is refused
# (401) and one with it served; off loopback without the token variable
# `flowrun mcp` refuses to start (78). SIGTERM ends the server and its
# children.
source "$(dirname "$0")/lib.bash"
SDK="$SRC/tests/mcp/node_modules/@modelcontextprotocol/sdk/dist/esm"
command -v node >/dev/null || { echo "SKIP: node is not installed (tests/deps.sh)"; exit 0; }
[ -f "$SDK/client/streamableHttp.js" ] || fail "the MCP SDK is not installed: run tests/deps.sh"
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

# The SDK client: node drive.mjs URL STEP [ARG]; prints one JSON line.
cat >"$WORK/drive.mjs" <<JS
import { Client } from "$SDK/client/index.js";
import { StreamableHTTPClientTransport } from "$SDK/client/streamableHttp.js";
import { execSync } from "node:child_process";
const [url, step, arg] = process.argv.slice(2);
const token = process.env.DRIVE_TOKEN;
const opts = token ? { requestInit: { headers: { Authorization: "Bearer " + token } } } : {};
const client = new Client({ name: "flowrun-e2e", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url), opts);
const out = (o) => console.log(JSON.stringify(o));
const running = () => {
  try { execSync("pgrep -f '" + process.env.CHILD + "'"); return true; } catch { return false; }
};
const until = async (cond) => {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
  return cond();
};
try {
  await client.connect(transport);
  if (step === "list") {
    const { tools } = await client.listTools();
    out({ session: transport.sessionId ?? null, version: client.getServerVersion(),
          tools: tools.map((t) => ({ name: t.name, schema: t.inputSchema })) });
  } else if (step === "call" || step === "progress") {
    const progress = [];
    const { name, args } = JSON.parse(arg);
    const res = await client.callTool({ name, arguments: args }, undefined,
      step === "progress" ? { onprogress: (p) => progress.push(p) } : {});
    out({ res, progress });
  } else if (step === "cancel") {
    const ac = new AbortController();
    const call = client.callTool({ name: "run_workflow", arguments: { path: process.env.HANG } },
      undefined, { signal: ac.signal, timeout: 600000 }).then(() => "answered", (e) => String(e));
    const appeared = await until(running);
    ac.abort("the user gave up");
    const ended = await call;
    const gone = await until(() => !running());
    out({ appeared, ended, gone });
  }
  await transport.terminateSession().catch(() => {});
  await client.close();
} catch (e) {
  out({ error: String(e && e.message || e), code: e && e.code });
  process.exitCode = 3;
}
JS

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
drive() { node "$WORK/drive.mjs" "$URL" "$@"; }
requests() { sim_stats | jq --arg m "$1" '.models[$m].requests // 0'; }

start_server -- 
out=$(drive list) || fail "list: $out"
[ "$(jq -r '.session | length' <<<"$out")" -ge 16 ] || fail "no session id: $out"
[ "$(jq -r '.version.name' <<<"$out")" = flowrun ] || fail "server name: $out"
[ "$(jq -c '[.tools[].name] | sort' <<<"$out")" = \
  '["approve","plan_workflow","run_task","run_workflow","spend"]' ] || fail "tools: $out"
[ "$(jq -c '.tools[] | select(.name == "run_task") | .schema.required' <<<"$out")" = '["prompt"]' ] ||
  fail "run_task's schema: $out"
[ "$(jq -r '.tools[] | select(.name == "run_workflow") | .schema.properties.path.type' <<<"$out")" = \
  string ] || fail "run_workflow's schema: $out"
pass "initialize over HTTP (a session), the five tools listed with their schemas"

out=$(drive call '{"name":"run_task","args":{"prompt":"REPLY: hello from the sim"}}') ||
  fail "run_task: $out"
[ "$(jq -r '.res.isError' <<<"$out")" = false ] || fail "run_task failed: $out"
[ "$(jq -r '.res.structuredContent.outputs[].text' <<<"$out")" = "hello from the sim" ] ||
  fail "run_task's output: $out"
[ "$(jq -r '.res.structuredContent.tasks[0].endpoint' <<<"$out")" = local ] ||
  fail "run_task's endpoint: $out"
[ "$(requests fast)" = 1 ] || fail "run_task sent $(requests fast) requests"
pass "run_task returns the simulator's reply, where it ran (1 request)"

out=$(drive progress "{\"name\":\"run_workflow\",\"args\":{\"path\":\"$WORK/flow.lua\"}}") ||
  fail "run_workflow: $out"
[ "$(jq -r '.res.isError' <<<"$out")" = false ] || fail "run_workflow failed: $out"
[ "$(jq -r '.res.structuredContent.outputs.final.text' <<<"$out")" = "final text" ] ||
  fail "run_workflow's final output: $out"
[ "$(jq -r '[.res.structuredContent.tasks[].status] | join(",")' <<<"$out")" = ok,ok ] ||
  fail "run_workflow's tasks: $out"
[ "$(jq '.progress | length' <<<"$out")" -ge 2 ] || fail "no progress over SSE: $out"
[ "$(requests fast)" = 3 ] || fail "run_workflow sent $(( $(requests fast) - 1 )) requests, not 2"
pass "run_workflow: both tasks ok, the final output, $(jq '.progress | length' <<<"$out") progress notifications over SSE"

out=$(drive call '{"name":"run_workflow","args":{"path":"/nonexistent/flow.lua"}}') ||
  fail "run_workflow of a missing file: $out"
[ "$(jq -r '.res.isError' <<<"$out")" = true ] || fail "no isError: $out"
pass "a tool error is a result with isError"

out=$(HANG="$WORK/hang-$MARK.lua" CHILD="[h]ang-$MARK" drive cancel) || fail "cancel: $out"
[ "$(jq -r .appeared <<<"$out")" = true ] || fail "the run's child never started: $out"
[ "$(jq -r .gone <<<"$out")" = true ] || fail "the child outlived the cancellation: $out"
! pgrep -f "[h]ang-$MARK" >/dev/null || fail "a child of the cancelled run is still running"
pass "the SDK's cancellation ends the run (its child gone from the process table)"

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
out=$(drive list) || fail "list after malformed requests: $out"
kill -0 "$SERVER_PID" || fail "the server died"
pass "malformed, truncated and oversized requests get 400/400/431 and the server goes on"

stop_server
! pgrep -f "[h]ang-$MARK" >/dev/null || fail "a child outlived the server"
grep -q "handles left open" "$WORK/server.err" && fail "handles left open: $(cat "$WORK/server.err")"

TOKEN="tok-$RANDOM-$RANDOM-secret"
start_server FLOWRUN_MCP_TOKEN="$TOKEN" -- 
grep -q "bearer token required" "$WORK/server.err" || fail "the server does not say a token is required"
out=$(drive list) && fail "a client without the token was served: $out"
grep -q "401" <<<"$out" || fail "not refused with 401: $out"
code=$(curl -s -D "$WORK/h401" -o /dev/null -w '%{http_code}' -X POST "$URL" \
  -H 'Content-Type: application/json' -H 'Authorization: Bearer wrong' --data '{}')
[ "$code" = 401 ] && grep -qi '^WWW-Authenticate: Bearer' "$WORK/h401" || fail "wrong token: $code"
out=$(DRIVE_TOKEN="$TOKEN" drive list) || fail "with the token: $out"
[ "$(jq '.tools | length' <<<"$out")" = 5 ] || fail "with the token: $out"
stop_server
! grep -qF "$TOKEN" "$WORK/server.err" || fail "the token appears in the server's log"
pass "with a token set, requests without it get 401 (WWW-Authenticate), with it are served"

set +e
FLOWRUN_MCP_TOKEN= timeout 20 "$FLOWRUN" mcp --http 0.0.0.0:0 2>"$WORK/err78"
rc=$?
MY_TOKEN= timeout 20 "$FLOWRUN" mcp --http 0.0.0.0:0 --token-env MY_TOKEN 2>"$WORK/err78b"
rc2=$?
set -e
[ "$rc" = 78 ] && grep -q FLOWRUN_MCP_TOKEN "$WORK/err78" || fail "off loopback: $rc $(cat "$WORK/err78")"
[ "$rc2" = 78 ] && grep -q MY_TOKEN "$WORK/err78b" || fail "--token-env: $rc2 $(cat "$WORK/err78b")"
pass "off loopback without the token variable, flowrun mcp refuses to start (78, naming it)"
