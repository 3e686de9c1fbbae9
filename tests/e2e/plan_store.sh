#!/usr/bin/env bash
# flowrun plan reads what earlier runs observed: after a --sim rehearsal,
# the plan of the rehearsal (plan --sim reads sim.db) expects each task's
# latency and output tokens as the rehearsal measured them, and says so.
# It opens the store read-only and creates nothing. A plan spends nothing,
# so it prints no budget alert, and it exits as the run would: 3 when a
# budget cap would stop the run, 1 when a task would fail, else 0.
source "$(dirname "$0")/lib.bash"

mkdir -p "$WORK/wf"
cat >"$WORK/wf/flow.lua" <<'LUA'
endpoint "box" { tier = "local", url = "http://127.0.0.1:1/v1", model = "m", max_parallel = 2 }
endpoint "api" { tier = "cloud", url = "http://127.0.0.1:1/v1", model = "c",
                 price = { input = 1, output = 2 } }
agent "a" {}
task "short" { agent = "a", prompt = "REPLY: one two three" }
task "long" { agent = "a", max_tokens = 400,
              prompt = "REPLY: " .. string.rep("word ", 60) }
task "last" { agent = "a", deps = { "short", "long" }, prompt = "REPLY: done {{short}}" }
LUA

# A plan before any run: defaults, and no state is created.
run_flowrun plan "$WORK/wf/flow.lua" --sim --json
expect_rc 0 "plan without history"
[ ! -e "$WORK/.flowrun" ] || fail "the plan created the state directory"
[ "$(jqr '[.tasks[].estimate.latency] | unique | join(",")')" = default ] ||
  fail "estimates without history: $(jqr '[.tasks[].estimate]')"
pass "a plan without history uses the defaults and creates no state"

# The rehearsal, with a distinctive latency.
run_flowrun "$WORK/wf/flow.lua" --sim --sim-latency 900 --out "$WORK/out" --json
expect_rc 0 "rehearsal"
cp "$WORK/stdout" "$WORK/rehearsal.json"
[ -f "$WORK/.flowrun/sim.db" ] || fail "the rehearsal left no sim.db"
before=$(cd "$WORK/.flowrun" && find . -type f -exec sha256sum {} + | sort)

run_flowrun plan "$WORK/wf/flow.lua" --sim --json
expect_rc 0 "plan after the rehearsal"
cp "$WORK/stdout" "$WORK/plan.json"
after=$(cd "$WORK/.flowrun" && find . -type f -exec sha256sum {} + | sort)
[ "$before" = "$after" ] || fail "the plan changed the state directory: $before // $after"
for task in short long last; do
  seen=$(jq -r --arg t "$task" '.tasks[] | select(.name == $t) | .latency_ms' "$WORK/rehearsal.json")
  planned=$(jq -r --arg t "$task" '.tasks[] | select(.name == $t) | .latency_ms' "$WORK/plan.json")
  awk -v s="$seen" -v p="$planned" 'BEGIN { d = p - s; if (d < 0) d = -d; exit !(d <= 0.25 * s) }' ||
    fail "$task: the plan expects $planned ms, the rehearsal took $seen ms"
  seen=$(jq -r --arg t "$task" '.tasks[] | select(.name == $t) | .tokens.output' "$WORK/rehearsal.json")
  planned=$(jq -r --arg t "$task" '.tasks[] | select(.name == $t) | .tokens.output' "$WORK/plan.json")
  [ "$seen" = "$planned" ] || fail "$task: the plan expects $planned tokens out, the rehearsal wrote $seen"
done
[ "$(jq -r '[.tasks[].estimate | "\(.latency)/\(.output_tokens)"] | unique | join(",")' "$WORK/plan.json")" = observed/observed ] ||
  fail "estimates: $(jq -c '[.tasks[].estimate]' "$WORK/plan.json")"
run_flowrun plan "$WORK/wf/flow.lua" --sim
expect_rc 0 "text plan after the rehearsal"
grep -q "observed" "$WORK/stdout" || fail "the text plan does not say which estimates are observed"
pass "after a rehearsal the plan expects its latencies and tokens (within 25%), says so, changes nothing"

# A plan of a real run reads state.db, which no run has written: defaults.
run_flowrun plan "$WORK/wf/flow.lua" --json
expect_rc 0 "plan of a real run"
[ "$(jqr '[.tasks[].estimate.latency] | unique | join(",")')" = default ] ||
  fail "a plan of a real run used the rehearsal's figures"
[ ! -e "$WORK/.flowrun/state.db" ] || fail "the plan created state.db"
pass "a plan of a real run reads state.db (none yet: defaults), and creates none"

# A plan spends nothing: no budget alert, even when the expected cost
# crosses the alert threshold.
cat >"$WORK/alert.lua" <<'LUA'
endpoint "api" { tier = "cloud", url = "http://127.0.0.1:1/v1", model = "c",
                 price = { input = 100, output = 100 } }
workflow { budget = { usd = 1, alert = 0.01 } }
agent "a" {}
task "t" { agent = "a", max_tokens = 4000, prompt = "REPLY: hello" }
LUA
run_flowrun plan "$WORK/alert.lua" --json
expect_rc 0 "plan under an alert threshold"
awk 'BEGIN { exit !(ARGV[1] > 0.01) }' "$(jqr .cost_usd)" || fail "the expected cost does not cross the alert"
if grep -qiE "alert|spent" "$WORK/stderr"; then fail "the plan printed: $(cat "$WORK/stderr")"; fi
[ "$(jqr '.budget_alerts | length')" = 0 ] || fail "budget_alerts in a plan: $(jqr .budget_alerts)"
pass "a plan prints no budget alert"

# The worst case does not fit the cap: the run would end the task with
# status budget and exit 3, so the plan exits 3.
cat >"$WORK/cap.lua" <<'LUA'
endpoint "api" { tier = "cloud", url = "http://127.0.0.1:1/v1", model = "c",
                 price = { input = 100, output = 100 } }
workflow { budget = { usd = 0.001 } }
agent "a" {}
task "t" { agent = "a", max_tokens = 4000, prompt = "REPLY: hello" }
LUA
run_flowrun plan "$WORK/cap.lua" --json
expect_rc 3 "plan whose worst case exceeds the cap"
[ "$(jqr '.tasks[0].status')" = budget ] || fail "status $(jqr '.tasks[0].status')"
run_flowrun "$WORK/cap.lua" --sim --out "$WORK/out-cap" --json
expect_rc 3 "the rehearsal of the same workflow"
pass "a plan whose worst case exceeds the cap exits 3, as the run does"

# A private task without a local endpoint would fail: exit 1.
cat >"$WORK/private.lua" <<'LUA'
endpoint "api" { tier = "cloud", url = "http://127.0.0.1:1/v1", model = "c",
                 price = { input = 1, output = 1 } }
agent "a" {}
task "secret" { agent = "a", private = true, prompt = "REPLY: s" }
LUA
run_flowrun plan "$WORK/private.lua" --json
expect_rc 1 "plan of a private task without a local endpoint"
[ "$(jqr '.tasks[0].status')" = failed ] || fail "status $(jqr '.tasks[0].status')"
pass "a plan where a private task has no local endpoint exits 1"
