#!/usr/bin/env bash
# No child process outlives flowrun (issue 12): a command started through
# engine/proc runs under a guard in a process group of its own, and when
# the process that started it dies (kill -9, SIGTERM, SIGINT) the guard
# ends the whole group, grandchildren included. The process table is the
# witness: each case's sleeps carry a unique duration, found with pgrep -f
# (the guard's and the shell's argv carry it too).
# The starting process is test_proc's helper mode (the real fr_proc_spawn on
# a libuv loop, the guard being that binary re-executed), and then the real
# flowrun binary as the guard under a parent shell killed with -9.
source "$(dirname "$0")/lib.bash"

HELPER=$(dirname "$FLOWRUN")/test_proc
[ -x "$HELPER" ] || fail "$HELPER is missing (the unit tests are built with the binaries)"

# wait_until SECONDS COMMAND...: polls COMMAND every 50 ms until it succeeds;
# returns 1 when SECONDS pass first.
wait_until() {
  local limit=$1 i
  shift
  for ((i = 0; i < limit * 20; i++)); do
    if "$@"; then return 0; fi
    sleep 0.05
  done
  "$@"
}
count() { pgrep -f -c -- "$1" 2>/dev/null || true; }
none_left() { [ "$(count "$1")" = 0 ]; }
two_running() { [ "$(count "$1")" = 2 ]; }
# The unique marker of a case: a duration no other sleep on the machine has.
marker() { printf '4%03d.%05d%05d' $((RANDOM % 1000)) $$ "$RANDOM"; }
# leftovers MARK: fails the test naming what remains, after killing it.
leftovers() {
  ps -o pid,pgid,ppid,args -p "$(pgrep -d, -f -- "$1")" >&2 || true
  pkill -KILL -f -- "$1" || true
  fail "$2"
}

for sig in KILL TERM INT; do
  mark=$(marker)
  "$HELPER" --guard-helper "$mark" >"helper-$sig.out" 2>"helper-$sig.err" &
  hpid=$!
  wait_until 10 grep -qs ready "helper-$sig.out" ||
    { cat "helper-$sig.err" >&2; fail "the helper never started its group ($sig)"; }
  wait_until 10 two_running "^sleep $mark" || leftovers "$mark" "expected two sleeps before the kill ($sig)"
  kill "-$sig" "$hpid"
  set +e
  wait "$hpid"
  rc=$?
  set -e
  [ "$rc" -ge 128 ] || fail "the helper did not die of SIG$sig (exit $rc)"
  wait_until 10 none_left "$mark" ||
    leftovers "$mark" "sleeps survived SIG$sig of the process that started them"
  pass "SIG$sig of the starting process ends the group: neither guard, shell nor sleep remains"
done

# The real flowrun binary as the guard, its parent a shell killed with -9:
# only the parent-death signal tells the guard (no watch pipe here).
mark=$(marker)
(
  exec 3<&-
  me=$BASHPID # expanded here: in the background command it would be the command's own pid
  "$FLOWRUN" --flowrun-guard "$me" -- sh -c "sleep $mark & echo started; sleep $mark" \
    >guard.out 2>guard.err &
  wait
) &
ppid=$!
wait_until 10 grep -qs started guard.out || { cat guard.err >&2; fail "the flowrun guard never ran its command"; }
# "started" comes before the second sleep is exec'd: wait for both.
wait_until 10 two_running "^sleep $mark" || leftovers "$mark" "expected two sleeps under the flowrun guard"
[ "$(count "flowrun-guard $ppid -- sh -c sleep $mark")" = 1 ] ||
  leftovers "$mark" "the guard's own argv is not '--flowrun-guard PID -- COMMAND'"
kill -KILL "$ppid"
wait "$ppid" 2>/dev/null || true
wait_until 10 none_left "$mark" || leftovers "$mark" "sleeps survived kill -9 of the guard's parent"
pass "kill -9 of the guard's parent: the flowrun guard ends its group and itself"

# A guard whose parent is already gone ends at once and runs nothing.
mark=$(marker)
set +e
"$FLOWRUN" --flowrun-guard 1 -- sleep "$mark" 3<&-
rc=$?
set -e
[ "$rc" = 143 ] || fail "a guard with a dead parent exited $rc, expected 143"
none_left "$mark" || leftovers "$mark" "a guard with a dead parent ran its command"
pass "a guard whose parent is gone runs nothing"
