#!/usr/bin/env bash
# Human approval (approve = true) without a terminal: the run finishes what
# does not depend on the checkpoint, records it pending in the store and
# exits 4, its dependents sending nothing (each task has its own model, so
# the simulator's counts say who sent a request); `flowrun approve` then a
# rerun sends requests for the dependents only and ends 0; `flowrun reject
# --note` fails the task with the note and skips its dependents (exit 1);
# --approve-all and --approve TASK answer in advance; an output that
# changed asks again. The terminal's prompt is tests/e2e/approval_tty.sh.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0
STATE="$WORK/state"
DB="$STATE/state.db"
ME=$(id -un)

cat >"$WORK/flow.lua" <<LUA
workflow { name = "approvals", vars = { rev = "1" }, defaults = { retries = 0, timeout = 30 } }
agent "a" {}
endpoint "e_design" { tier = "local", url = "$SIM_URL/v1", model = "m_design" }
endpoint "e_build" { tier = "local", url = "$SIM_URL/v1", model = "m_build" }
endpoint "e_final" { tier = "local", url = "$SIM_URL/v1", model = "m_final" }
endpoint "e_side" { tier = "local", url = "$SIM_URL/v1", model = "m_side" }
endpoint "e_after_side" { tier = "local", url = "$SIM_URL/v1", model = "m_after_side" }
task "design" { agent = "a", endpoint = "e_design", approve = true,
                prompt = "REPLY: design rev {{var.rev}}" }
task "build" { agent = "a", endpoint = "e_build", deps = { "design" },
               prompt = "REPLY: built {{var.rev}} from {{design}}" }
task "final" { agent = "a", endpoint = "e_final", deps = { "build", "side" },
               prompt = "REPLY: final {{var.rev}}" }
task "side" { agent = "a", endpoint = "e_side", prompt = "REPLY: side" }
task "after_side" { agent = "a", endpoint = "e_after_side", deps = { "side" },
                    prompt = "REPLY: after side" }
LUA
F="$WORK/flow.lua"

# Requests per model since the last call of `sent` (the counts seen are
# kept in a file: `sent` runs in a subshell), as "model=n ...".
sent() {
  local stats out="" m n seen
  stats=$(sim_stats)
  for m in design build final side after_side; do
    n=$(jq -r ".models.m_$m.requests // 0" <<<"$stats")
    seen=$(cat "$WORK/seen.$m" 2>/dev/null || echo 0)
    [ "$n" -gt "$seen" ] && out+="$m=$((n - seen)) "
    echo "$n" >"$WORK/seen.$m"
  done
  echo "${out% }"
}
# run_noterm ARGS...: a run whose standard input is no terminal.
run_noterm() {
  set +e
  "$FLOWRUN" "$@" </dev/null >"$WORK/stdout" 2>"$WORK/stderr"
  RC=$?
  set -e
  leak_check "$WORK/stdout" "$WORK/stderr" || fail "the sentinel API key leaked"
}
task_field() { jqr ".tasks[] | select(.name==\"$1\") | $2"; }
row() { sqlite3 "$DB" "SELECT $1 FROM approvals WHERE workflow = 'approvals' AND task = 'design'"; }

# 1. No terminal: exit 4, the checkpoint pending, the dependents waiting.
run_noterm "$F" --state "$STATE" --json --out "$WORK/o1"
expect_rc 4 "a run stopped at a checkpoint"
[ "$(sent)" = "design=1 side=1 after_side=1" ] || fail "first run: requests $(sent)"
[ "$(jqr .status)" = waiting ] || fail "report status $(jqr .status)"
[ "$(task_field design .status)" = ok ] || fail "design: $(task_field design .status)"
[ "$(task_field design .approval.state)" = pending ] || fail "design approval: $(task_field design .approval)"
for t in build final; do
  [ "$(task_field $t .status)" = pending ] || fail "$t: $(task_field $t .status)"
  [ "$(task_field $t .reason)" = "waiting for approval of 'design'" ] || fail "$t reason: $(task_field $t .reason)"
done
[ "$(task_field after_side .status)" = ok ] || fail "after_side did not finish"
[ "$(cat "$WORK/o1/after_side.txt")" = "after side" ] || fail "after_side's output"
run_id=$(jqr .run)
[ "$(row "state || '|' || run_id || '|' || output_path || '|' || (asked_at > 0)")" = \
  "pending|$run_id|$WORK/o1/design.txt|1" ] || fail "store row: $(row '*')"
[ -n "$(row output_hash)" ] || fail "no output hash in the store"
expect_stderr "flowrun approve $F design --state $STATE [--note TEXT]"
expect_stderr "flowrun reject $F design --state $STATE [--note TEXT]"
expect_stderr "design: approval pending"
pass "without a terminal: exit 4, dependents sent nothing, independent tasks finished, pending row in the store"

# 2. A rerun before any decision asks again and stays at 4, paying nothing.
run_noterm "$F" --state "$STATE" --json --out "$WORK/o1b"
expect_rc 4 "a rerun with the checkpoint still pending"
[ -z "$(sent)" ] || fail "an undecided rerun sent requests: $(sent)"

# 3. approve, then the rerun: only the dependents' models get requests.
set +e
"$FLOWRUN" approve "$F" design --note "looks right" --state "$STATE" 2>"$WORK/approve.err"
rc=$?
set -e
[ "$rc" = 0 ] || fail "flowrun approve: exit $rc: $(cat "$WORK/approve.err")"
[ "$(row "state || '|' || decided_by || '|' || note || '|' || (decided_at > 0)")" = "approved|$ME|looks right|1" ] ||
  fail "store after approve: $(row '*')"
run_noterm "$F" --state "$STATE" --json --out "$WORK/o2"
expect_rc 0 "the rerun after approve"
[ "$(sent)" = "build=1 final=1" ] || fail "rerun after approve: requests $(sent)"
[ "$(task_field design .approval.state)/$(task_field design .approval.by)/$(task_field design .approval.note)" = \
  "approved/$ME/looks right" ] || fail "report approval: $(task_field design .approval)"
task_field design .approval.at | grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$' ||
  fail "approval time: $(task_field design .approval.at)"
[ "$(task_field design .cached)" = true ] || fail "design was not a cache hit"
[ "$(cat "$WORK/o2/final.txt")" = "final 1" ] || fail "final's output"
expect_stderr "design: approved by $ME"
pass "after flowrun approve, the rerun sent requests for the dependents only and ended 0"

# 4. A changed output (another rev) asks again: the old decision was for another output.
run_noterm "$F" --state "$STATE" --var rev=2 --json --out "$WORK/o3"
expect_rc 4 "a changed output"
[ "$(sent)" = "design=1" ] || fail "changed output: requests $(sent)"
[ "$(task_field design .approval.state)" = pending ] || fail "changed output not asked again"
[ "$(row state)" = pending ] || fail "store after changed output: $(row state)"
pass "an output that changed asks again"

# 5. reject with a note: the task fails with it, its dependents are skipped, exit 1.
"$FLOWRUN" reject "$F" design --note "too vague" --state "$STATE" 2>/dev/null ||
  fail "flowrun reject failed"
run_noterm "$F" --state "$STATE" --var rev=2 --json --out "$WORK/o4"
expect_rc 1 "the rerun after reject"
[ -z "$(sent)" ] || fail "a rejected run sent requests: $(sent)"
[ "$(task_field design .status)" = failed ] || fail "design: $(task_field design .status)"
[ "$(task_field design .reason)" = "rejected by $ME: too vague" ] || fail "reason: $(task_field design .reason)"
[ "$(task_field design .approval.state)" = rejected ] || fail "approval: $(task_field design .approval)"
for t in build final; do
  [ "$(task_field $t .status)" = skipped ] || fail "$t after reject: $(task_field $t .status)"
done
# The note is what the dependent reads as why it was skipped.
[ "$(task_field build .reason)" = "dependency 'design' was rejected by $ME: too vague" ] ||
  fail "build's reason after reject: $(task_field build .reason)"
[ "$(jqr .status)" = failed ] || fail "run status after reject: $(jqr .status)"
expect_stderr "design: rejected by $ME: too vague"
pass "after flowrun reject --note, the task failed with the note, its dependents were skipped with it as their reason, exit 1"

# 6. --approve-all and --approve TASK answer in advance.
run_noterm "$F" --state "$STATE" --var rev=3 --approve-all --json --out "$WORK/o5"
expect_rc 0 "--approve-all"
[ "$(sent)" = "design=1 build=1 final=1" ] || fail "--approve-all: requests $(sent)"
[ "$(task_field design .approval.state)/$(task_field design .approval.note)" = "approved/--approve-all" ] ||
  fail "--approve-all approval: $(task_field design .approval)"
run_noterm "$F" --state "$STATE" --var rev=4 --approve design --json --out "$WORK/o6"
expect_rc 0 "--approve design"
[ "$(sent)" = "design=1 build=1 final=1" ] || fail "--approve: requests $(sent)"
pass "--approve-all and --approve TASK ran to the end without asking"

# 7. Errors of the commands.
expect_cmd() {
  local want=$1 msg=$2
  shift 2
  set +e
  "$FLOWRUN" "$@" </dev/null >/dev/null 2>"$WORK/cmd.err"
  local rc=$?
  set -e
  [ "$rc" = "$want" ] || fail "flowrun $*: exit $rc, expected $want ($(cat "$WORK/cmd.err"))"
  grep -qF -- "$msg" "$WORK/cmd.err" || fail "flowrun $*: stderr lacks '$msg': $(cat "$WORK/cmd.err")"
}
expect_cmd 2 "did you mean 'design'?" "$F" --state "$STATE" --approve desgn
expect_cmd 65 "did you mean 'design'?" approve "$F" desgn --state "$STATE"
expect_cmd 65 "task 'side' has no approve = true" reject "$F" side --state "$STATE"
expect_cmd 65 "no state store at $WORK/empty/state.db" approve "$F" design --state "$WORK/empty"
[ ! -e "$WORK/empty" ] || fail "flowrun approve created a state folder"
cat >"$WORK/other.lua" <<LUA
workflow { name = "other" }
endpoint "e" { tier = "local", url = "$SIM_URL/v1", model = "m_other" }
agent "a" {}
task "gate" { agent = "a", approve = true, prompt = "REPLY: x" }
LUA
expect_cmd 65 "no approval of task 'gate' is pending" approve "$WORK/other.lua" gate --state "$STATE"
expect_cmd 65 "missing.lua: cannot read" approve "$WORK/missing.lua" design --state "$STATE"
expect_cmd 2 "needs a workflow file and a task" approve "$F"
pass "flowrun approve|reject refuse an unknown task, a task without a checkpoint and a checkpoint never asked"

# 8. plan marks the checkpoint and sends nothing.
run_noterm plan "$F" --state "$STATE"
expect_rc 0 "plan"
grep -E '^ +[0-9]+ +design .*waits for approval' "$WORK/stdout" >/dev/null || fail "plan: $(cat "$WORK/stdout")"
[ -z "$(sent)" ] || fail "plan sent requests: $(sent)"
pass "flowrun plan marks the approval task and sends nothing"
