#!/usr/bin/env bash
# Workflow load time, not part of the test suite: for workflows of 1,000,
# 10,000 and 20,000 tasks (SIZES), a fan-out (no deps) and the layered DAG
# of peer.sh (50 layers, 1-3 deps each, each prompt reading its deps'
# outputs), the CPU time of the cheapest commands that load a workflow:
# `flowrun tools` (load and check: names, fields, agents, deps,
# placeholders; no MCP server is declared, so nothing is asked) and
# `flowrun plan --task n0` (the same, then the graph: the cycle check and
# the topological sort, and a plan of one task). Each figure is the median
# of REPS runs minus the same command on a one-task workflow (process start
# and Lua), with the growth ratio to the size before (linear = the size
# ratio). Each run is bounded by TIMEOUT seconds (default 300).
#
#   cmake --build build && bash tests/bench/load.sh [build dir]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(realpath "${1:-$SRC/build}")
SIZES=${SIZES:-"1000 10000 20000"}
REPS=${REPS:-3}
TIMEOUT=${TIMEOUT:-300}
unset FLOWRUN_LUA_DIR FLOWRUN_STATE
[ -x "$BUILD/flowrun" ] || { echo "load.sh: $BUILD/flowrun is missing: cmake --build $BUILD" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export XDG_CONFIG_HOME=$WORK/xdg # no user endpoints file joins in
cd "$WORK"
gen() { python3 "$SRC/tests/bench/peer_run.py" --write-workflow "$1" 64 http://127.0.0.1:9 "$2"; }

# cpu_ms FILE COMMAND...: the median CPU time (user + sys, ms) of REPS runs.
cpu_ms() {
  local wf=$1; shift
  python3 - "$REPS" "$TIMEOUT" "$@" "$wf" <<'PY'
import os, statistics, subprocess, sys, threading
reps, timeout, cmd = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
runs = []
for _ in range(reps):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t = threading.Timer(timeout, p.kill); t.start()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0); t.cancel()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("load.sh: %s failed (%s): %s" % (" ".join(cmd), os.waitstatus_to_exitcode(status), err[-300:].decode()))
    runs.append((ru.ru_utime + ru.ru_stime) * 1000)
print("%.1f" % statistics.median(runs))
PY
}

gen '{"shape":"fanout","n":1}' one.lua
base_tools=$(cpu_ms one.lua "$BUILD/flowrun" tools)
base_plan=$(cpu_ms one.lua "$BUILD/flowrun" plan --task n0)
printf 'workflow load, CPU ms (median of %s, minus a one-task workflow: tools %s ms, plan %s ms); load %s\n' \
  "$REPS" "$base_tools" "$base_plan" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %7s %12s %7s %18s %7s\n' shape tasks "tools (load)" growth "plan --task (+graph)" growth
for shape in fanout layered; do
  prev_n="" prev_t="" prev_p=""
  for n in $SIZES; do
    if [ "$shape" = fanout ]; then dag="{\"shape\":\"fanout\",\"n\":$n}"
    else dag="{\"shape\":\"layered\",\"n\":$n,\"layers\":50,\"max_deps\":3,\"seed\":42}"; fi
    gen "$dag" "$shape-$n.lua"
    t=$(cpu_ms "$shape-$n.lua" "$BUILD/flowrun" tools)
    p=$(cpu_ms "$shape-$n.lua" "$BUILD/flowrun" plan --task n0)
    awk -v s="$shape" -v n="$n" -v t="$t" -v p="$p" -v bt="$base_tools" -v bp="$base_plan" \
        -v pn="$prev_n" -v pt="$prev_t" -v pp="$prev_p" 'BEGIN {
      lt = t - bt; lp = p - bp
      gt = pn == "" ? "-" : sprintf("%.1fx", lt / (pt - bt)); gp = pn == "" ? "-" : sprintf("%.1fx", lp / (pp - bp))
      printf "%-9s %7d %9.0f ms %7s %15.0f ms %7s%s\n", s, n, lt, gt, lp, gp,
        pn == "" ? "" : sprintf("   (size %.0fx)", n / pn) }'
    prev_n=$n prev_t=$t prev_p=$p
  done
done
