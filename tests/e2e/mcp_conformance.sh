#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance, from
# tests/mcp/node_modules: tests/deps.sh) against flowrun's MCP client over
# Streamable HTTP: for each client scenario a tools client must pass, the
# suite starts its scenario server and runs tests/mcp/mcp_client (engine/mcp)
# on its URL, at each revision the scenario applies to. Every check must pass.
# Not run here, because they cannot apply to flowrun's client:
# elicitation-sep1034-client-defaults (flowrun declares no elicitation: it
# has no user to ask), auth/* (flowrun sends headers_env, no OAuth) and the
# extensions (tasks, skills).
source "$(dirname "$0")/lib.bash"
CLIENT="$(dirname "$FLOWRUN")/mcp_client"
SUITE="$SRC/tests/mcp/node_modules/@modelcontextprotocol/conformance/dist/index.js"
command -v node >/dev/null || { echo "SKIP: node is not installed (tests/deps.sh)"; exit 0; }
[ -f "$SUITE" ] || fail "the conformance suite is not installed: run tests/deps.sh"
[ -x "$CLIENT" ] || fail "no $CLIENT: build the mcp_client target"
node_args=()
# The suite wants Node 22's fs.globSync; on Node 20 a loader hook adds it.
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 22 ] ||
  node_args=(--import "$SRC/tests/mcp/shim/fs-compat.mjs")

run_scenario() { # SCENARIO REVISION
  local out="$WORK/results/$1-$2" log
  mkdir -p "$out"
  if ! log=$(node "${node_args[@]}" "$SUITE" client --command "$CLIENT" --scenario "$1" \
    --spec-version "$2" -o "$out" 2>&1); then
    echo "$log" | sed -n '/Test Results/,$p' >&2
    fail "conformance scenario $1 at $2"
  fi
  grep -q "OVERALL: PASSED" <<<"$log" || fail "scenario $1 at $2 did not pass: $log"
  local checks
  checks=$(find "$out" -name checks.json | head -1)
  [ -n "$checks" ] || fail "scenario $1 at $2 left no checks.json"
  [ "$(jq '[.[] | select(.status == "FAILURE")] | length' "$checks")" = 0 ] ||
    fail "scenario $1 at $2 has failed checks"
  [ "$(jq '[.[] | select(.status == "SUCCESS")] | length' "$checks")" -gt 0 ] ||
    fail "scenario $1 at $2 passed no check"
  pass "$1 at $2 ($(jq '[.[] | select(.status == "SUCCESS")] | length' "$checks") checks)"
}

# 2025-11-25: the initialize handshake (server/discover refused); a stream
# that ends before its response is resumed with a GET.
for s in initialize tools_call sse-retry json-schema-2020-12-preservation; do
  run_scenario "$s" 2025-11-25
done
# 2026-07-28: server/discover, _meta and the HTTP headers on every request.
for s in tools_call request-metadata http-standard-headers http-custom-headers \
  http-invalid-tool-headers json-schema-ref-no-deref json-schema-2020-12-preservation \
  sep-2322-client-request-state; do
  run_scenario "$s" 2026-07-28
done
