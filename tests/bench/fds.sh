#!/usr/bin/env bash
# The descriptor benchmark, not part of the test suite (tests/e2e/fds.sh
# checks the same at 5,000 tasks): a fan-out of 20,000 tasks at
# max_parallel = 1000 under --sim, once with `ulimit -Sn 1024` (flowrun
# raises it to the hard limit) and once with the hard limit at 1024 too
# (about 464 transfers at once). Prints the wall time, the outputs written
# and the cooldowns; each run is bounded by a 900 s watchdog.
#
#   cmake --build build && bash tests/bench/fds.sh [build dir]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(realpath "${1:-$SRC/build}")
unset FLOWRUN_LUA_DIR FLOWRUN_STATE
N=${N:-20000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
cat >fan.lua <<LUA
endpoint "e" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m", max_parallel = 1000 }
agent "a" {}
for i = 1, $N do task("t" .. i) { agent = "a", prompt = "REPLY: " .. i } end
LUA
for limits in "-Sn" "-Sn -Hn"; do
  rm -rf out st
  start=$(date +%s.%N)
  set +e
  ( for o in $limits; do ulimit "$o" 1024; done
    exec timeout 900 "$BUILD/flowrun" fan.lua --sim --json -q --out out --state st ) >report.json 2>stderr
  rc=$?
  set -e
  end=$(date +%s.%N)
  files=$(find out -name 't*.txt' 2>/dev/null | wc -l)
  cooldowns=$(jq '[.endpoints[].cooldowns] | add' report.json 2>/dev/null || echo "?")
  awk -v l="ulimit $limits 1024" -v n="$N" -v s="$start" -v e="$end" -v rc="$rc" -v f="$files" \
      -v c="$cooldowns" 'BEGIN { printf "%-22s tasks %6d  exit %d  wall %6.1f s  outputs %6d  cooldowns %s\n", l, n, rc, e - s, f, c }'
done
