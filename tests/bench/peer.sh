#!/usr/bin/env bash
# flowrun beside the asyncio reference peer (../shared/bench/asyncio-dag.py),
# not part of the test suite: both against one flowrun-sim process (--tps 0,
# model `peer` at 50 ms), on the shapes of issue 14 (fan-out 1,000 at cap 10
# and 100, unlimited fan-outs of 1,000 and 10,000, a 200-step chain, a
# 5,000-task layered DAG at cap 64), in REPS interleaved repetitions
# (flowrun on disk, peer, flowrun on tmpfs). Prints the medians as a ratio
# table: makespan, CPU per task, peak RSS, efficiency (lower bound /
# makespan), disk / tmpfs, and the time to the first request on the wire.
# The runner is tests/bench/peer_run.py (standard library only).
#
#   cmake --build build && bash tests/bench/peer.sh [build dir]
#   bash tests/bench/peer.sh --quick [build dir]     # 1 rep, smaller shapes
#
# Environment: REPS (default 3), PEER (the peer script), ONLY (run the
# shapes whose name contains it), LATENCY (ms, default 50), TIMEOUT (s per
# process, default 300), JSON_OUT (write every run's figures there),
# BENCH_DISK (a folder on the disk, default the build dir).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
QUICK=()
if [ "${1:-}" = --quick ]; then QUICK=(--quick); shift; fi
BUILD=$(realpath "${1:-$SRC/build}")
REPS=${REPS:-3}
[ ${#QUICK[@]} -eq 0 ] || REPS=${REPS_QUICK:-1}
unset FLOWRUN_LUA_DIR FLOWRUN_STATE # the built-in policies, the default state folder
for b in flowrun flowrun-sim; do
  [ -x "$BUILD/$b" ] || { echo "peer.sh: $BUILD/$b is missing: cmake --build $BUILD" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "peer.sh: needs python3" >&2; exit 2; }
# The peer lives beside the repository (../shared/bench/); a git worktree
# elsewhere finds it beside its main checkout, or at $PEER.
if [ -z "${PEER:-}" ]; then
  main=$(git -C "$SRC" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
  for p in "$SRC/../shared/bench/asyncio-dag.py" "${main%/.git}/../shared/bench/asyncio-dag.py"; do
    [ -f "$p" ] && { PEER=$p; break; }
  done
fi
if [ -z "${PEER:-}" ]; then
  echo "peer.sh: the peer asyncio-dag.py is not in ../shared/bench/: set PEER=path" >&2; exit 2
fi
[ -f "$PEER" ] || { echo "peer.sh: PEER=$PEER is not a file" >&2; exit 2; }
WORK=$(mktemp -d)
RUNNER=""
trap '[ -z "$RUNNER" ] || kill "$RUNNER" 2>/dev/null; rm -rf "$WORK"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
for prog in rusage files_floor; do
  "${CC:-cc}" -O2 -o "$WORK/$prog" "$SRC/tests/bench/$prog.c" ||
    { echo "peer.sh: cannot compile tests/bench/$prog.c (set CC)" >&2; exit 2; }
done
# The runner stops the simulator and the run in progress when it is signalled.
python3 "$SRC/tests/bench/peer_run.py" --build "$BUILD" --peer "$(realpath "$PEER")" --rusage "$WORK/rusage" \
  --files-floor "$WORK/files_floor" \
  --reps "$REPS" "${QUICK[@]}" --latency "${LATENCY:-50}" --timeout "${TIMEOUT:-300}" \
  --only "${ONLY:-}" --disk "${BENCH_DISK:-}" ${JSON_OUT:+--json-out "$JSON_OUT"} &
RUNNER=$!
rc=0
wait "$RUNNER" || rc=$?
RUNNER=""
exit "$rc"
