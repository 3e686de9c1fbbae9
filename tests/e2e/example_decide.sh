#!/usr/bin/env bash
# The example of a workflow that decides (workflows/build-modules.lua), the
# way its header tells a user to run it on the built-in simulator: the
# plan's list fans out into one instance per module, the join waits for all
# of them, the run stops at the integration's checkpoint (exit 4, the
# review and rework not sent), `flowrun approve --sim` answers it, and the
# rerun sends requests only for what is behind the checkpoint: everything
# before it comes from the store, nothing is paid twice.
source "$(dirname "$0")/lib.bash"
cp "$SRC/workflows/build-modules.lua" "$WORK/"
wf=$WORK/build-modules.lua

run_flowrun "$wf" --sim --sim-latency 5 --sim-tps 0 --json
expect_rc 4 "the first run stops at the checkpoint"
expect_stderr "flowrun approve $wf integrate --sim"
n=$(jqr '.tasks | map(select(.instance_of == "module")) | length')
[ "$n" -eq "$(jqr '.tasks[] | select(.name == "plan") | .json.modules | length')" ] ||
  fail "$n instances for the plan's modules"
[ "$n" -ge 3 ] || fail "only $n instances"
[ "$(jqr '.tasks[] | select(.name == "module") | .instances')" = "$n" ] || fail "fan-out count"
names=$(jqr '[.tasks[] | select(.instance_of == "module") | .name] | join(",")')
want=$(jqr '[.tasks[] | select(.name == "plan") | .json.modules[] | "module[" + .name + "]"] | join(",")')
[ "$names" = "$want" ] || fail "instances '$names', expected '$want' (named after the plan's modules, in order)"
[ "$(jqr '.tasks[] | select(.name == "integrate") | .approval.state')" = pending ] || fail "not pending"
for t in review rework; do
  [ "$(jqr ".tasks[] | select(.name == \"$t\") | .attempts")" = 0 ] || fail "$t was sent before the approval"
done
first_sent=$(jqr '[.tasks[].attempts] | add')
pass "the first run fans out into $n named instances and stops at the checkpoint (exit 4, $first_sent requests)"

run_flowrun approve "$wf" integrate --note "ship it"
expect_rc 65 "approving without --sim looks in the real store"
expect_stderr "--sim for a rehearsal's checkpoint"
run_flowrun approve "$wf" integrate --sim --note "ship it"
expect_rc 0 "flowrun approve --sim"

run_flowrun "$wf" --sim --sim-latency 5 --sim-tps 0 --json
expect_rc 0 "the rerun after the approval"
[ "$(jqr '.tasks[] | select(.name == "integrate") | .approval | .state + ":" + .note')" = "approved:ship it" ] ||
  fail "the approval is not in the report"
again=$(jqr '[.tasks[] | select(.name != "review" and .name != "rework") | .attempts] | add')
[ "$again" = 0 ] || fail "the rerun sent $again requests for work done before the checkpoint"
[ "$(jqr '[.tasks[] | select(.instance_of == "module")] | length')" = "$n" ] || fail "other instances on rerun"
[ "$(jqr '.tasks[] | select(.name == "review") | .status')" = ok ] || fail "review did not run"
ready=$(jqr '.tasks[] | select(.name == "review") | .json.ready')
rework=$(jqr '.tasks[] | select(.name == "rework") | .status + ":" + (.reason // "")')
if [ "$ready" = true ]; then
  [ "$rework" = "skipped:condition false" ] || fail "a ready review, yet rework is '$rework'"
else
  [ "$rework" = "ok:" ] || fail "a review with fixes, yet rework is '$rework'"
fi
pass "after flowrun approve --sim the rerun sends only review and rework (review ready=$ready, rework ${rework%%:*})"
