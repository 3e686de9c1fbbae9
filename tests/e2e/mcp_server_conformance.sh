#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance, from
# tests/mcp/node_modules: tests/deps.sh), server scenarios, against
# `flowrun mcp --http 127.0.0.1:0 --sim`. Each scenario below must pass
# every check but the ones named after it, which are listed with their
# reason here and in docs/testing.md (MCP server conformance). A scenario
# that passes no check fails too, and so does any other failing check.
# Not run: the scenarios that call the suite's own test tools
# (tools-call-*: test_simple_text, test_image_content, test_error_handling,
# test_tool_with_progress, ...; json-schema-2020-12's
# json_schema_2020_12_tool; the input-required-result-* tools), prompts,
# resources, completion, logging, sampling and elicitation: flowrun serves
# its five tools and nothing else, so those fail as they should, with
# "Unknown tool" or "Method not found".
source "$(dirname "$0")/lib.bash"
SUITE="$SRC/tests/mcp/node_modules/@modelcontextprotocol/conformance/dist/index.js"
command -v node >/dev/null || fail "node is not installed: run tests/deps.sh"
[ -f "$SUITE" ] || fail "the conformance suite is not installed: run tests/deps.sh"
node_args=()
# The suite wants Node 22's fs.globSync; on Node 20 a loader hook adds it.
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 22 ] ||
  node_args=(--import "$SRC/tests/mcp/shim/fs-compat.mjs")

"$FLOWRUN" mcp --http 127.0.0.1:0 --sim --state "$WORK/state" 2>"$WORK/server.err" &
SERVER_PID=$!
trap 'r=$?; kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; set +e; (exit $r); cleanup' EXIT
for _ in $(seq 200); do
  URL=$(grep -o 'http://127.0.0.1:[0-9]*/mcp' "$WORK/server.err" || true)
  [ -n "$URL" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.05
done
[ -n "$URL" ] || fail "flowrun mcp --http did not start: $(cat "$WORK/server.err")"

# scenario REVISION NAME [CHECK-ID...]: every check passes but those named.
scenario() {
  local rev=$1 name=$2 out="$WORK/results/$1-$2" checks allowed
  shift 2
  allowed=$(printf '%s\n' "$@" | jq -R . | jq -sc .)
  mkdir -p "$out"
  timeout 120 node "${node_args[@]}" "$SUITE" server --url "$URL" --scenario "$name" \
    --spec-version "$rev" -o "$out" >"$out/log" 2>&1 || true
  checks=$(find "$out" -name checks.json | head -1)
  [ -n "$checks" ] || fail "$name at $rev left no checks.json: $(tail -5 "$out/log")"
  local bad
  bad=$(jq -r --argjson ok "$allowed" \
    '.[] | select(.status == "FAILURE" and (.id as $i | $ok | index($i) | not)) |
     "\(.id): \(.errorMessage // "")"' "$checks")
  [ -z "$bad" ] || fail "$name at $rev: $bad"
  local n
  n=$(jq '[.[] | select(.status == "SUCCESS")] | length' "$checks")
  [ "$n" -gt 0 ] || fail "$name at $rev passed no check"
  pass "$name at $rev ($n checks passed${1:+; known: $*})"
}

for s in server-initialize server-session-lifecycle ping tools-list dns-rebinding-protection \
  server-sse-multiple-streams; do
  scenario 2025-11-25 "$s"
done
# 2026-07-28. server-stateless: four checks need the suite's own test tools
# (a tool that sends requests on its stream, logs, declares capabilities).
scenario 2026-07-28 tools-list
scenario 2026-07-28 http-header-validation
scenario 2026-07-28 server-stateless sep-2575-server-rejects-undeclared-capability \
  sep-2575-missing-capability-http-400 sep-2575-http-server-no-independent-requests-on-stream \
  sep-2575-server-no-log-without-loglevel
for s in dns-rebinding-protection server-sse-multiple-streams sep-2164-resource-not-found \
  input-required-result-missing-input-response input-required-result-ignore-extra-params \
  input-required-result-validate-input; do
  scenario 2026-07-28 "$s"
done
kill -0 "$SERVER_PID" || fail "the server did not survive the suite"
