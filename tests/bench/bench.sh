#!/usr/bin/env bash
# flowrun's scheduling benchmark, not part of the test suite. Runs the real
# binary against a separate flowrun-sim process with a fixed latency and
# instant token rate, and prints for each scenario the makespan, the lower
# bound (the larger of the critical path and the capacity bound), their
# ratio, flowrun's CPU time per task and its peak RSS.
#
#   cmake --build build && bash tests/bench/bench.sh [build dir]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(realpath "${1:-$SRC/build}")
unset FLOWRUN_LUA_DIR # the built-in policies are in the binary
command -v /usr/bin/time >/dev/null || { echo "bench needs GNU time: apt-get install time" >&2; exit 2; }
WORK=$(mktemp -d)
SIM_PID=""
trap '[ -z "$SIM_PID" ] || kill "$SIM_PID"; rm -rf "$WORK"' EXIT

# scenario NAME LATENCY_MS SLOTS LOWER_BOUND_MS WORKFLOW_BODY
scenario() {
  local name=$1 latency=$2 bound=$3 body=$4
  exec {fd}< <(exec "$BUILD/flowrun-sim" --port 0 --latency "$latency" --tps 0)
  SIM_PID=$!
  read -r -t 20 -u "$fd" url
  printf '%s\n' "${body//SIM_URL/$url}" >"$WORK/$name.lua"
  /usr/bin/time -f "%U %S %M" -o "$WORK/time" \
    "$BUILD/flowrun" "$WORK/$name.lua" --json -q --out "$WORK/out-$name" --state "$WORK/state-$name" \
      >"$WORK/report.json"
  kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""
  local tasks makespan critical user sys rss
  tasks=$(jq '.tasks | length' "$WORK/report.json")
  makespan=$(jq '.makespan_ms' "$WORK/report.json")
  critical=$(jq '.critical_path_ms' "$WORK/report.json")
  [ "$(jq -r .status "$WORK/report.json")" = ok ] || { echo "$name: run failed" >&2; exit 1; }
  read -r user sys rss <"$WORK/time"
  awk -v n="$name" -v t="$tasks" -v m="$makespan" -v b="$bound" -v c="$critical" \
      -v u="$user" -v s="$sys" -v r="$rss" 'BEGIN {
    printf "%-22s tasks %6d  makespan %8.0f ms  lower bound %8.0f ms  ratio %.3f  critical path %8.0f ms  cpu/task %6.1f us  peak rss %6.1f MiB\n",
      n, t, m, b, m / b, c, (u + s) * 1e6 / t, r / 1024 }'
  rm -rf "$WORK/out-$name"
}

endpoints() { # endpoints COUNT SLOTS
  for i in $(seq 1 "$1"); do
    echo "endpoint \"e$i\" { tier = \"local\", url = \"SIM_URL/v1\", model = \"m$i\", max_parallel = $2 }"
  done
}

# 40 independent tasks over 2 endpoints x 3 slots at 500 ms: 40/6 x latency.
scenario "capacity-40x6" 500 $((40 * 500 / 6)) "$(endpoints 2 3)
agent \"a\" {}
for i = 1, 40 do task(\"t\" .. i) { agent = \"a\", prompt = \"REPLY: \" .. i } end"

# A fan-out of 10,000 tasks over 4 endpoints x 16 slots at 50 ms.
scenario "fanout-10000" 50 $(( (10000 + 63) / 64 * 50 )) "$(endpoints 4 16)
agent \"a\" {}
for i = 1, 10000 do task(\"t\" .. i) { agent = \"a\", prompt = \"REPLY: \" .. i } end"

# A random layered DAG of 5,000 tasks (50 layers of 100, each task with 1-3
# deps in the layer before) over 4 x 16 slots at 50 ms. Lower bound: the
# larger of 50 layers x 50 ms and 5,000 x 50 ms / 64 slots.
scenario "layered-dag-5000" 50 $(( (5000 * 50 / 64) > 2500 ? (5000 * 50 / 64) : 2500 )) "$(endpoints 4 16)
agent \"a\" {}
math.randomseed(42)
for l = 1, 50 do
  for i = 1, 100 do
    local deps = {}
    if l > 1 then
      local seen = {}
      for _ = 1, math.random(1, 3) do
        local d = math.random(1, 100)
        if not seen[d] then seen[d] = true; deps[#deps + 1] = \"l\" .. (l - 1) .. \"-\" .. d end
      end
    end
    task(\"l\" .. l .. \"-\" .. i) { agent = \"a\", deps = deps, prompt = \"REPLY: \" .. l .. \".\" .. i }
  end
end"
