#!/usr/bin/env bash
# The speed and balanced policies against the wall clock, not part of the
# test suite: 40 independent tasks over 4 local + 10 cloud slots, the real
# binary against a separate flowrun-sim where the local model answers in
# LOCAL_MS and the cloud model in CLOUD_MS (instant token rate). Prints each
# policy's makespan, how many tasks it put on the cloud, and the lower
# bound (40 tasks over 14 slots, whole rounds of the slower latency).
#
#   cmake --build build && bash tests/bench/speed.sh [build dir]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(realpath "${1:-$SRC/build}")
LOCAL_MS=${LOCAL_MS:-300}
CLOUD_MS=${CLOUD_MS:-500}
export FLOWRUN_LUA_DIR="$SRC/lua"
WORK=$(mktemp -d)
SIM_PID=""
trap '[ -z "$SIM_PID" ] || kill "$SIM_PID"; rm -rf "$WORK"' EXIT

exec {fd}< <(exec "$BUILD/flowrun-sim" --port 0 --tps 0 --model "m:latency=$LOCAL_MS" \
  --model "c:latency=$CLOUD_MS")
SIM_PID=$!
read -r -t 20 -u "$fd" url
cat >"$WORK/fan.lua" <<LUA
endpoint "box" { tier = "local", url = "$url/v1", model = "m", max_parallel = 4 }
endpoint "api" { tier = "cloud", url = "$url/v1", model = "c", max_parallel = 10,
                 price = { input = 0.5, output = 1.5 } }
agent "a" {}
for i = 1, 40 do task("t" .. i) { agent = "a", prompt = "REPLY: r" .. i } end
LUA
for policy in balanced speed; do
  "$BUILD/flowrun" "$WORK/fan.lua" --policy "$policy" --state "$WORK/state-$policy" \
    --json -q --out "$WORK/out-$policy" >"$WORK/$policy.json"
  [ "$(jq -r .status "$WORK/$policy.json")" = ok ] || { echo "$policy: run failed" >&2; exit 1; }
  jq -r --arg p "$policy" '"\($p): makespan \(.makespan_ms | round) ms, " +
    "\([.tasks[] | select(.tier == "cloud")] | length) of \(.tasks | length) tasks on the cloud"' \
    "$WORK/$policy.json"
done
# The best whole-round schedule: the least T with
# floor(T / local) x 4 + floor(T / cloud) x 10 >= 40.
awk -v l="$LOCAL_MS" -v c="$CLOUD_MS" 'BEGIN {
  best = -1
  for (i = 1; i <= 40; i++) for (k = 0; k < 2; k++) {
    t = i * (k ? c : l)
    if (int(t / l) * 4 + int(t / c) * 10 >= 40 && (best < 0 || t < best)) best = t
  }
  printf "lower bound: %d ms (local %d ms x 4 slots, cloud %d ms x 10 slots)\n", best, l, c }'
