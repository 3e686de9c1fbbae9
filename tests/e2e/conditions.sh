#!/usr/bin/env bash
# Join rules and conditions on a graph with a failed branch: each trigger
# (all_ok, all_done, any_failed) and each condition outcome (true, false,
# error) runs exactly the tasks it should. Every task has its own model, so
# the simulator's request counts say which tasks sent a request; the JSON
# report says how each ended and why the skipped ones were skipped.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0 --model m_broken:faults=500+500+500+500

# name | trigger | deps | when | prompt
tasks=(
  "ok1||||REPLY: fine"
  'review||||REPLY: {"ok": false, "n": 0}'
  "broken||||REPLY: never"
  "after_ok||ok1||REPLY: after {{ok1}}"
  "after_broken||broken||REPLY: never"
  "after_both||ok1,broken||REPLY: never"
  "cleanup|all_done|ok1,broken||REPLY: broken={{broken.status}} text=[{{broken}}] ok1={{ok1.status}}"
  "notify|any_failed|ok1,broken||REPLY: because {{broken.reason}}"
  "quiet|any_failed|ok1||REPLY: never"
  "when_true||ok1|{{ok1}}|REPLY: ran"
  "when_false||ok1|fn:return ctx.ok1.text == 'nope'|REPLY: never"
  "when_expr_false||review|{{review.json.ok}}|REPLY: never"
  "when_expr_zero||review|{{review.json.n}}|REPLY: never"
  "after_when_false||when_false||REPLY: never"
  "done_after_when_false|all_done|when_false||REPLY: cleanup {{when_false.status}}/{{when_false.reason}}"
  "failed_after_when_false|any_failed|when_false||REPLY: handled"
  "when_error||ok1|fn:error('no verdict in ' .. ctx.ok1.text)|REPLY: never"
  "when_status|all_done|broken|fn:return ctx.broken.status == 'failed'|REPLY: fallback"
  "when_failed_json|all_done|broken|{{broken.json.ok}}|REPLY: never"
  "done_after_skipped|all_done|after_broken||REPLY: after {{after_broken.status}}"
)

{
  echo 'workflow { name = "conditions", defaults = { retries = 0, timeout = 30 } }'
  echo 'agent "a" {}'
  for row in "${tasks[@]}"; do
    IFS='|' read -r name trigger deps when prompt <<<"$row"
    echo "endpoint \"e_$name\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"m_$name\" }"
    printf 'task "%s" { agent = "a", endpoint = "e_%s", prompt = [[%s]]' "$name" "$name" "$prompt"
    [ "$name" = review ] && printf ', schema = "json"'
    [ -n "$trigger" ] && printf ', trigger = "%s"' "$trigger"
    if [ -n "$deps" ]; then
      printf ', deps = { "%s" }' "${deps//,/\", \"}"
    fi
    case "$when" in
      "") ;;
      fn:*) printf ', when = function(ctx) %s end' "${when#fn:}" ;;
      *) printf ', when = "%s"' "$when" ;;
    esac
    echo ' }'
  done
} >"$WORK/flow.lua"

run_flowrun "$WORK/flow.lua" --no-cache --json --out "$WORK/out"
expect_rc 1 "a run with a failed task"
stats=$(sim_stats)

# name | status | requests sent | reason (a substring) for the ones that did not run
expected=(
  "ok1|ok|1|"
  "review|ok|1|"
  "broken|failed|1|HTTP 500"
  "after_ok|ok|1|"
  "after_broken|skipped|0|dependency 'broken' did not succeed"
  "after_both|skipped|0|dependency 'broken' did not succeed"
  "cleanup|ok|1|"
  "notify|ok|1|"
  "quiet|skipped|0|trigger any_failed: every dependency succeeded"
  "when_true|ok|1|"
  "when_false|skipped|0|condition false"
  "when_expr_false|skipped|0|condition false"
  "when_expr_zero|skipped|0|condition false"
  "after_when_false|skipped|0|dependency 'when_false' was skipped"
  "done_after_when_false|ok|1|"
  "failed_after_when_false|ok|1|"
  "when_error|failed|0|no verdict in fine"
  "when_status|ok|1|"
  "when_failed_json|skipped|0|condition false"
  "done_after_skipped|ok|1|"
)
[ "$(jqr '.tasks | length')" = "${#expected[@]}" ] || fail "the report has $(jqr '.tasks | length') tasks"
for row in "${expected[@]}"; do
  IFS='|' read -r name status sent reason <<<"$row"
  got=$(jqr ".tasks[] | select(.name==\"$name\") | .status")
  [ "$got" = "$status" ] || fail "$name: status $got, expected $status ($(jqr ".tasks[] | select(.name==\"$name\") | .reason"))"
  n=$(jq -r ".models.m_$name.requests // 0" <<<"$stats")
  [ "$n" = "$sent" ] || fail "$name: $n requests reached the simulator, expected $sent"
  if [ -n "$reason" ]; then
    got=$(jqr ".tasks[] | select(.name==\"$name\") | .reason")
    case "$got" in *"$reason"*) ;; *) fail "$name: reason '$got', expected '$reason'" ;; esac
    expect_stderr "$name: $got"
  fi
done
pass "each trigger rule and condition outcome ran exactly the tasks it should (${#expected[@]} tasks)"

[ "$(cat "$WORK/out/cleanup.txt")" = "broken=failed text=[] ok1=ok" ] || fail "cleanup: $(cat "$WORK/out/cleanup.txt")"
grep -q "^because .*HTTP 500" "$WORK/out/notify.txt" || fail "notify: $(cat "$WORK/out/notify.txt")"
[ "$(cat "$WORK/out/done_after_when_false.txt")" = "cleanup skipped/condition false" ] ||
  fail "done_after_when_false: $(cat "$WORK/out/done_after_when_false.txt")"
[ "$(cat "$WORK/out/done_after_skipped.txt")" = "after skipped" ] || fail "done_after_skipped"
pass "a task that runs after a dependency that did not succeed reads its status and reason, and its text as \"\""

# Skips by decision alone (a condition, any_failed with nothing failed) do
# not fail the run.
cat >"$WORK/decided.lua" <<LUA
workflow { name = "decided" }
endpoint "e" { tier = "local", url = "$SIM_URL/v1", model = "m_decided" }
agent "a" {}
task "first" { agent = "a", prompt = "REPLY: yes" }
task "gated" { agent = "a", deps = { "first" }, when = function(ctx) return false end,
               prompt = "REPLY: never" }
task "after" { agent = "a", deps = { "gated" }, prompt = "REPLY: never" }
task "onfail" { agent = "a", deps = { "first" }, trigger = "any_failed", prompt = "REPLY: never" }
task "final" { agent = "a", deps = { "after", "onfail" }, trigger = "all_done",
               prompt = "REPLY: final {{after.status}}" }
LUA
run_flowrun "$WORK/decided.lua" --json --out "$WORK/out2"
expect_rc 0 "a run whose only skips were decided"
[ "$(jqr .status)" = ok ] || fail "decided run status $(jqr .status)"
[ "$(jqr '[.tasks[] | .status] | join(",")')" = "ok,skipped,skipped,skipped,ok" ] ||
  fail "decided run: $(jqr '[.tasks[] | .status] | join(",")')"
[ "$(jq -r '.models.m_decided.requests' <<<"$(sim_stats)")" = 2 ] || fail "decided run requests"
pass "a run whose only skips were decided by conditions and triggers exits 0"

# A plan cannot know a condition: a task with `when` is planned as if it
# runs; triggers follow the plan's states (nothing fails in a plan).
run_flowrun plan "$WORK/decided.lua" --json
expect_rc 0 "plan"
[ "$(jqr '.tasks[] | select(.name=="gated") | .status')" = ok ] || fail "plan: gated not planned"
[ "$(jqr '.tasks[] | select(.name=="onfail") | .status')" = skipped ] || fail "plan: onfail"
run_flowrun plan "$WORK/decided.lua"
expect_rc 0 "plan text"
grep -q "onfail .*skipped: trigger any_failed: every dependency succeeded" "$WORK/stdout" ||
  { cat "$WORK/stdout"; fail "plan text lacks the trigger skip"; }
pass "flowrun plan plans a condition as if it runs and follows the triggers"

# Bad values are load errors naming file:line.
bad() { # FIELD-TEXT EXPECTED
  printf 'agent "a" {}\ntask "x" { agent = "a", prompt = "hi" }\ntask "y" { agent = "a", deps = { "x" }, prompt = "hi", %s }\n' "$1" >"$WORK/bad.lua"
  run_flowrun "$WORK/bad.lua"
  expect_rc 65 "bad: $1"
  expect_stderr "bad.lua:3"
  expect_stderr "$2"
}
bad 'trigger = "all_succeeded"' "field 'trigger' must be \"all_ok\", \"all_done\" or \"any_failed\""
bad 'trigger = "any_fail"' 'did you mean "any_failed"?'
bad 'trigger = true' "field 'trigger' must be"
bad 'when = 3' "field 'when' must be a function of ctx"
bad 'when = "{{z.json.ok}}"' "field 'when': unknown placeholder '{{z.json.ok}}'"
bad 'wehn = "x"' "did you mean 'when'"
printf 'agent "a" {}\ntask "x" { agent = "a", prompt = "hi", trigger = "any_failed" }\n' >"$WORK/bad.lua"
run_flowrun "$WORK/bad.lua"
expect_rc 65 "any_failed without deps"
expect_stderr 'trigger = "any_failed" runs a task only when one of its deps did not succeed'
pass "bad triggers and conditions are load errors at file:line"

# A task that ends while nothing else runs (its policy keeps it waiting)
# still lets its all_done dependent be placed as usual: its condition is
# evaluated, not skipped over.
cat >"$WORK/never.lua" <<'LUA'
return { route = function(task, candidates, run) return nil end }
LUA
cat >"$WORK/stalled.lua" <<LUA
workflow { name = "stalled", policy = "never.lua" }
endpoint "e" { tier = "local", url = "$SIM_URL/v1", model = "m_stalled" }
agent "a" {}
task "stuck" { agent = "a", prompt = "REPLY: never" }
task "gated" { agent = "a", deps = { "stuck" }, trigger = "all_done",
               when = function(ctx) return ctx.stuck.status == "ok" end, prompt = "REPLY: never" }
LUA
run_watched 30 "a stalled run" "$WORK/stalled.lua" --json
expect_rc 1 "a stalled run"
[ "$(jqr '.tasks[] | select(.name=="stuck") | .status')" = failed ] || fail "stalled: stuck"
[ "$(jqr '.tasks[] | select(.name=="gated") | .reason')" = "condition false" ] ||
  fail "stalled: gated $(jqr '.tasks[] | select(.name=="gated") | .reason')"
pass "an all_done task after a task that failed while nothing ran is placed as usual"
