#!/usr/bin/env bash
# The tool loop on the loop thread, against the wall clock (not part of the
# test suite): 50 independent tasks, each a conversation of two model turns
# with one command tool call between them that takes TOOL_MS (sleep), on an
# endpoint that takes all 50 at once (flowrun-sim, MODEL_MS per turn).
# Run serially this is 50 x (2 x MODEL_MS + TOOL_MS); on a loop that never
# blocks it is about one chain: 2 x MODEL_MS + TOOL_MS. Prints the
# makespan, the serial sum, the chain and their ratios.
#
#   cmake --build build && bash tests/bench/tools.sh [build dir]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(realpath "${1:-$SRC/build}")
N=${N:-50}
TOOL_MS=${TOOL_MS:-200}
MODEL_MS=${MODEL_MS:-20}
export FLOWRUN_LUA_DIR="$SRC/lua"
WORK=$(mktemp -d)
SIM_PID=""
trap '[ -z "$SIM_PID" ] || kill "$SIM_PID"; rm -rf "$WORK"' EXIT

exec {fd}< <(exec "$BUILD/flowrun-sim" --port 0 --tps 0 --model "m:latency=$MODEL_MS")
SIM_PID=$!
read -r -t 20 -u "$fd" url
secs=$(awk -v ms="$TOOL_MS" 'BEGIN { printf "%.3f", ms / 1000 }')
cat >"$WORK/fan.lua" <<LUA
endpoint "box" { tier = "local", url = "$url/v1", model = "m", max_parallel = $N }
tool "wait" { description = "Waits", parameters = { type = "object" },
              command = { "sleep", "$secs" } }
agent "a" { tools = { "wait" } }
for i = 1, $N do
  task("t" .. i) { agent = "a", prompt = "Wait " .. i .. ".\n@@call wait {}" }
end
LUA
"$BUILD/flowrun" "$WORK/fan.lua" --state "$WORK/state" --json -q --out "$WORK/out" >"$WORK/r.json"
[ "$(jq -r .status "$WORK/r.json")" = ok ] || { echo "the run failed" >&2; exit 1; }
jq -r --argjson n "$N" --argjson tool "$TOOL_MS" --argjson model "$MODEL_MS" '
  (.makespan_ms) as $m | ($n * (2 * $model + $tool)) as $serial | (2 * $model + $tool) as $chain |
  "\($n) tasks with a \($tool) ms tool call each: makespan \($m | round) ms; " +
  "serial sum \($serial) ms (x\(($serial / $m * 10 | round) / 10) faster); " +
  "one chain \($chain) ms (makespan / chain \((($m / $chain) * 100 | round) / 100))"' "$WORK/r.json"
