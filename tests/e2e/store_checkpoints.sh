#!/usr/bin/env bash
# The state store's write-ahead log is checkpointed off the loop's thread:
# SQLite would copy the log into the database inside a commit every 1,000
# pages (page writes and two fdatasyncs on the loop's thread, some
# milliseconds each); the run's commits only count the log, and libuv's
# pool copies it on a connection of its own (engine/walckpt). Checked from
# outside the process: a preloaded library (tests/e2e/support/fsync_probe.c)
# counts the fsync and fdatasync calls of the main thread, which runs the
# loop, and of every other, and which files the main thread synced. In a
# run of 4,000 tasks the main thread syncs the database file no more than
# in a run of one task (the store's close), but for a checkpoint the loop
# made itself when the pool fell behind; the syncs of the checkpoints are
# the pool's. Nothing is lost: every task is in the ledger, and the log is
# bounded.
source "$(dirname "$0")/lib.bash"
[ -n "${FSYNC_PROBE:-}" ] || FSYNC_PROBE=$SRC/build/libfsync_probe.so
[ -f "$FSYNC_PROBE" ] || fail "no fsync probe library at $FSYNC_PROBE (cmake --build builds it)"
# A sanitized flowrun refuses a preloaded library loaded before its runtime
# unless told that is fine.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
start_sim --latency 2 --tps 0

# workflow FILE N: N independent tasks on one endpoint of 32 slots.
workflow() {
  {
    echo "endpoint \"e\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"m\", max_parallel = 32 }"
    echo 'agent "a" {}'
    echo "for i = 1, $2 do task(\"t\" .. i) { agent = \"a\", prompt = \"REPLY: r\" .. i } end"
  } >"$1"
}

# probed DIR N: runs N tasks in a fresh folder DIR (its own state store)
# with the probe preloaded into flowrun alone; sets MAIN and OTHER to the
# counts.
probed() {
  mkdir -p "$1"
  workflow "$1/wf.lua" "$2"
  set +e
  (cd "$1" && timeout 300 env FSYNC_PROBE_OUT="$1/syncs" LD_PRELOAD="$FSYNC_PROBE" \
    "$FLOWRUN" wf.lua --json --log-level debug --no-cache >"$1/stdout" 2>"$1/stderr")
  RC=$?
  set -e
  [ "$RC" -eq 0 ] || { cat "$1/stderr" >&2; fail "the run of $2 tasks: exit code $RC"; }
  [ -s "$1/syncs" ] || fail "the probe wrote no counts for the run of $2 tasks"
  MAIN=$(awk '$1 == "main" { print $2 }' "$1/syncs")
  OTHER=$(awk '$1 == "other" { print $2 }' "$1/syncs")
}

# db_syncs DIR: the main thread's syncs of DIR's state database file (not
# its log, not its folder).
db_syncs() {
  awk -v f="$1/.flowrun/state.db" '$1 == "main_file" && $3 == f { n += $2 } END { print n + 0 }' "$1/syncs"
}

probed "$WORK/one" 1
base=$MAIN base_db=$(db_syncs "$WORK/one")
probed "$WORK/many" 4000
many_db=$(db_syncs "$WORK/many")
stats=$(grep -o 'commits=.*' "$WORK/many/stderr") || fail "no store.stats line in the debug log"
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<" $stats"; }
ckpts=$(field checkpoints) on_loop=$(field checkpoints_on_loop)
most=$(field log_most) restarts=$(field log_restarts)
# Only a checkpoint syncs the database file: one the loop made itself when
# the log reached its bound, and the store's close (as with one task).
# What else the loop's thread syncs is the log: the new header of a log
# started again (SQLite syncs it in that commit) and the log before its
# own checkpoints.
[ "$many_db" -le "$((base_db + ${on_loop:-0}))" ] ||
  fail "the loop's thread synced the database $many_db times for 4,000 tasks, $base_db for one, with ${on_loop:-0} checkpoints of its own: the commits checkpoint on the loop ($(tr '\n' ' ' <"$WORK/many/syncs"))"
[ "${ckpts:-0}" -ge 2 ] || fail "${ckpts:-no} checkpoints in the pool for 4,000 tasks ($stats)"
[ "$OTHER" -ge "$ckpts" ] || fail "the pool made $OTHER syncs for $ckpts checkpoints"
[ "$most" -lt 16000 ] || fail "the log reached $most frames"
n=$(sqlite3 "$WORK/many/.flowrun/state.db" "SELECT count(*) FROM attempts WHERE outcome = 'ok'")
[ "$n" -eq 4000 ] || fail "$n attempts in the ledger, not 4,000"
pass "4,000 tasks: the loop's thread synced the database $many_db times (one task: $base_db; $on_loop checkpoints on the loop) and $MAIN times in all (one task: $base; $restarts restarts of the log), the pool $OTHER times in $ckpts checkpoints, the log at most $most frames, every attempt in the ledger"
