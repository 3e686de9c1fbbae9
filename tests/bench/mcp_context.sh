#!/usr/bin/env bash
# How much of an MCP client's context `flowrun mcp` saves (not part of the
# test suite): a five-task coding pipeline (design, implement, tests,
# review, docs) whose outputs have the sizes such tasks have in practice
# (SIZES, bytes, scripted through the simulator's REPLY lines), run through
# one run_workflow call over stdio. Without flowrun the client's agent
# would hold every one of those outputs in its context; with it, only the
# tool's result text. Prints both, in bytes and tokens (bytes / 4), and
# the share saved, once with the default --inline-max (8192) and once
# with outputs always returned as paths (--inline-max 1).
#
#   cmake --build build && bash tests/bench/mcp_context.sh [build dir]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(realpath "${1:-$SRC/build}")
SIZES=${SIZES:-"design=6000 implement=14000 tests=9000 review=3000 docs=4000"}
WORK=$(mktemp -d)
SIM_PID=""
trap '[ -z "$SIM_PID" ] || kill "$SIM_PID"; rm -rf "$WORK"' EXIT
exec {fd}< <(exec "$BUILD/flowrun-sim" --port 0 --tps 0 --latency 5)
SIM_PID=$!
read -r -t 20 -u "$fd" url
echo "endpoint \"lab\" { tier = \"local\", url = \"$url/v1\", model = \"m\", max_parallel = 4 }" \
  >"$WORK/endpoints.lua"

# A reply of about N bytes of words, the same every run.
words() {
  awk -v n="$1" -v seed="$2" 'BEGIN { srand(seed); s = "";
    split("parse state buffer event loop task retry budget cache route plan tests module " \
          "header error handle close queue reply token stream schema check", w, " ");
    while (length(s) < n) s = s w[int(rand() * 22) + 1] (rand() < 0.1 ? ".\n" : " "); print s }'
}
{
  echo 'workflow { name = "context", defaults = { max_tokens = 8192 } }'
  echo 'agent "a" { }'
  prev=""
  for kv in $SIZES; do
    name=${kv%%=*} size=${kv#*=}
    deps=""
    [ -z "$prev" ] || deps="deps = { \"$prev\" }, "
    printf 'task "%s" { agent = "a", %sprompt = [[REPLY: %s]] }\n' "$name" "$deps" \
      "$(words "$size" "${#name}" | tr '\n' ' ')"
    prev=$name
  done
} >"$WORK/pipeline.lua"

# One run_workflow call over stdio; prints the result's text.
call() {
  local out
  coproc MCP { "$BUILD/flowrun" mcp --endpoints "$WORK/endpoints.lua" --state "$WORK/state-$1" \
    --inline-max "$1" 2>/dev/null; }
  printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' \
    '{"jsonrpc":"2.0","method":"notifications/initialized"}' \
    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"run_workflow\",\"arguments\":{\"path\":\"$WORK/pipeline.lua\"}}}" \
    >&"${MCP[1]}"
  while read -r -t 60 out <&"${MCP[0]}"; do
    [ "$(jq -r '.id // empty' <<<"$out")" = 2 ] && break
  done
  exec {MCP[1]}>&-
  wait "$MCP_PID" || true
  jq -r '.result.content[0].text' <<<"$out"
}

outputs=0
for kv in $SIZES; do outputs=$((outputs + ${kv#*=})); done
printf '%-44s %8s %8s %7s\n' "what the client's agent reads" bytes tokens saved
printf '%-44s %8d %8d %7s\n' "every task's output (the agent does the work)" "$outputs" $((outputs / 4)) -
for max in 8192 1; do
  res=$(call "$max" | wc -c)
  label="run_workflow's result (--inline-max $max)"
  printf '%-44s %8d %8d %6.1f%%\n' "$label" "$res" $((res / 4)) \
    "$(awk -v r="$res" -v o="$outputs" 'BEGIN { print 100 * (1 - r / o) }')"
done
