#!/usr/bin/env bash
# Human approval on a terminal: flowrun runs on a real pseudo-terminal
# (tests/tty/pty_drive.c) and shows the checkpoint's output (its first lines,
# wide ones cut, and the file holding all of it); the answer typed at the
# prompt continues the run in the same process (the dependents' requests
# reach the simulator, exit 0) or, rejected with a note, fails the task with
# it (exit 1). Two checkpoints are asked one at a time; Ctrl-D leaves them
# pending (exit 4); Ctrl-C at the prompt interrupts the run (130). The
# terminal's mode is the same after flowrun as before (pty_drive checks).
source "$(dirname "$0")/lib.bash"
: "${PTY_DRIVE:=$SRC/build/pty_drive}"
PTY_DRIVE=$(realpath "$PTY_DRIVE")
start_sim --latency 5 --tps 0
ME=$(id -un)
long=$(printf 'w%.0s' $(seq 1 300))

cat >"$WORK/flow.lua" <<LUA
workflow { name = "tty", vars = { rev = "1" }, defaults = { retries = 0, timeout = 60 } }
agent "a" {}
endpoint "e_design" { tier = "local", url = "$SIM_URL/v1", model = "m_design" }
endpoint "e_build" { tier = "local", url = "$SIM_URL/v1", model = "m_build" }
endpoint "e_side" { tier = "local", url = "$SIM_URL/v1", model = "m_side" }
task "design" { agent = "a", endpoint = "e_design", approve = true, schema = "json",
                prompt = [[REPLY: {"title": "design rev {{var.rev}}", "long": "$long", "k3": 3, "k4": 4, "k5": 5, "k6": 6, "k7": 7, "k8": 8, "k9": 9, "k10": 10, "k11": 11, "k12": 12}]] }
task "build" { agent = "a", endpoint = "e_build", deps = { "design" }, prompt = "REPLY: built {{var.rev}}" }
task "side" { agent = "a", endpoint = "e_side", prompt = "REPLY: side {{var.rev}}" }
LUA
F="$WORK/flow.lua"
requests() { sim_stats | jq -r ".models.m_$1.requests // 0"; }
# drive NAME STEPS... : flowrun on a terminal with --json to a file.
drive() {
  local name=$1
  shift
  set +e
  "$PTY_DRIVE" --stdout "$WORK/$name.json" --transcript "$WORK/$name.tty" "$@" \
    -- "$FLOWRUN" "$F" --state "$WORK/state" --json --out "$WORK/$name" --progress "${EXTRA[@]}"
  RC=$?
  set -e
}
task_field() { jq -r ".tasks[] | select(.name==\"$2\") | $3" "$WORK/$1.json"; }
EXTRA=()

# 1. Approve at the prompt: the run goes on in the same process.
drive approve --expect "approve 'design'?" --send 'a fine by me\n'
[ "$RC" = 0 ] || { cat "$WORK/approve.tty" >&2; fail "approve at the prompt: exit $RC"; }
[ "$(requests build)" = 1 ] || fail "build sent $(requests build) requests"
[ "$(task_field approve design .approval.state)/$(task_field approve design .approval.by)/$(task_field approve design .approval.note)" = \
  "approved/$ME/fine by me" ] || fail "approval: $(task_field approve design .approval)"
[ "$(task_field approve build .status)" = ok ] || fail "build: $(task_field approve build .status)"
tty=$(tr -d '\r' <"$WORK/approve.tty")
# The output is the indented JSON (14 lines): the first 10 are shown.
grep -qF '  |   "title": "design rev 1",' <<<"$tty" || fail "the prompt lacks the output's first lines: $tty"
grep -qF '  |   "k9": 9,' <<<"$tty" || fail "the prompt lacks line 10: $tty"
! grep -qF '"k10"' <<<"$tty" || fail "the prompt shows more than 10 lines"
grep -qF "(4 more lines)" <<<"$tty" || fail "the prompt does not say how many lines are left"
grep -qE '^  \|   "long": "w{89} \.\.\.$' <<<"$tty" || fail "a wide line was not cut at 100 columns: $tty"
grep -qF "whole output: $WORK/approve/design.json" <<<"$tty" || fail "the prompt lacks the output's path"
# The answer comes before the dependents' progress lines: the run waited for it.
answer_line=$(grep -n "optionally followed by a note: a fine by me" <<<"$tty" | cut -d: -f1)
build_line=$(grep -n "task=build status=ok" <<<"$tty" | cut -d: -f1)
[ -n "$answer_line" ] && [ -n "$build_line" ] && [ "$build_line" -gt "$answer_line" ] ||
  fail "build's progress line is not after the answer: $tty"
pass "approved at the prompt: the dependents ran in the same process, exit 0; the prompt showed 10 lines, cut wide ones, the path"

# 2. Reject at the prompt with a note (a new output: rev 2).
EXTRA=(--var rev=2)
before=$(requests build)
drive reject --expect "approve 'design'?" --send 'r too vague\n'
[ "$RC" = 1 ] || { cat "$WORK/reject.tty" >&2; fail "reject at the prompt: exit $RC"; }
[ "$(requests build)" = "$before" ] || fail "build sent a request after a rejection"
[ "$(task_field reject design .reason)" = "rejected by $ME: too vague" ] ||
  fail "reason: $(task_field reject design .reason)"
[ "$(task_field reject build .status)" = skipped ] || fail "build: $(task_field reject build .status)"
[ "$(task_field reject side .status)" = ok ] || fail "side: $(task_field reject side .status)"
pass "rejected at the prompt with a note: the task failed with it, its dependent skipped, exit 1"

# 3. The rejection was recorded for that output: a rerun without a terminal fails the same way.
set +e
"$FLOWRUN" "$F" --state "$WORK/state" --var rev=2 --json </dev/null >"$WORK/rerun.json" 2>/dev/null
rc=$?
set -e
[ "$rc" = 1 ] || fail "rerun after a rejection at the prompt: exit $rc"
[ "$(task_field rerun design .reason)" = "rejected by $ME: too vague" ] || fail "rerun reason"
pass "the prompt's decision is recorded in the store for that output"

# 4. Two checkpoints, asked one at a time.
cat >"$WORK/two.lua" <<LUA
workflow { name = "two", defaults = { retries = 0, timeout = 60 } }
agent "a" {}
endpoint "e" { tier = "local", url = "$SIM_URL/v1", model = "m_two" }
endpoint "e_after" { tier = "local", url = "$SIM_URL/v1", model = "m_after" }
task "first" { agent = "a", endpoint = "e", approve = true, prompt = "REPLY: one" }
task "second" { agent = "a", endpoint = "e", approve = true, prompt = "REPLY: two" }
task "after" { agent = "a", endpoint = "e_after", deps = { "first", "second" }, prompt = "REPLY: both" }
LUA
set +e
"$PTY_DRIVE" --stdout "$WORK/two.json" --transcript "$WORK/two.tty" \
  --expect "approve '" --send 'a\n' --expect "approve '" --send 'yes ok\n' \
  -- "$FLOWRUN" "$WORK/two.lua" --state "$WORK/state" --json --out "$WORK/two"
RC=$?
set -e
[ "$RC" = 0 ] || { cat "$WORK/two.tty" >&2; fail "two checkpoints: exit $RC"; }
[ "$(requests after)" = 1 ] || fail "after sent $(requests after) requests"
[ "$(jq -r '[.tasks[] | select(.approval.state == "approved")] | length' "$WORK/two.json")" = 2 ] ||
  fail "two checkpoints: $(jq -c '[.tasks[] | .approval]' "$WORK/two.json")"
[ "$(tr -d '\r' <"$WORK/two.tty" | grep -c "^approve '")" = 2 ] || fail "not two prompts: $(cat "$WORK/two.tty")"
# The second question came after the first answer, not on top of it.
tr -d '\r' <"$WORK/two.tty" | awk '/^approve .*note: a$/ {a=NR} /^approve / {n++; if (n==2) b=NR} END {exit !(a && b > a)}' ||
  fail "the second prompt was not shown after the first answer: $(cat "$WORK/two.tty")"
pass "two checkpoints were asked one at a time, both answered, the join ran"

# 5. Ctrl-D at the prompt: no answer; the checkpoint is left pending (exit 4).
EXTRA=(--var rev=5)
drive eof --expect "approve 'design'?" --send '\x04'
[ "$RC" = 4 ] || { cat "$WORK/eof.tty" >&2; fail "end of input at the prompt: exit $RC"; }
[ "$(task_field eof design .approval.state)" = pending ] || fail "eof: $(task_field eof design .approval)"
grep -qF "flowrun approve $F design" "$WORK/eof.tty" || fail "eof: no answer commands printed"
pass "end of input at the prompt left the checkpoint pending: exit 4"

# 6. Ctrl-C at the prompt: an interrupt like any other (130), the terminal restored.
EXTRA=(--var rev=6)
drive sigint --expect "approve 'design'?" --send '\x03'
[ "$RC" = 130 ] || { cat "$WORK/sigint.tty" >&2; fail "Ctrl-C at the prompt: exit $RC"; }
pass "Ctrl-C at the prompt ended the run with 130, the terminal's mode unchanged"
