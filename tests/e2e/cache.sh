#!/usr/bin/env bash
# The result cache: a rerun reuses every finished task without a request or
# a cost; --no-cache and --fresh force new calls; a failed result is never
# cached. After kill -9 at 20 random moments of a 300-task run, each landing
# while the run is in progress (checked: SIGKILL's exit status, the store's
# running run and tasks not done), each rerun sends the tasks not done only,
# its outputs are byte-identical to an uninterrupted run, and nothing
# finished is paid for twice.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0

cat >"$WORK/flow.lua" <<LUA
workflow { name = "cached" }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "c", max_parallel = 4,
                   price = { input = 1, output = 2 } }
agent "a" { system = "be brief" }
task "one" { agent = "a", prompt = "Say something." }
task "two" { agent = "a", deps = { "one" }, prompt = "Answer: {{one}}" }
task "three" { agent = "a", deps = { "one" }, prompt = "REPLY: three" }
LUA

run_flowrun "$WORK/flow.lua" --out "$WORK/first" --json
expect_rc 0 "first run"
first_cost=$(jqr .cost_usd)
[ "$(sim_requests)" = 3 ] || fail "first run: $(sim_requests) requests"
run_flowrun "$WORK/flow.lua" --out "$WORK/second" --json
expect_rc 0 "second run"
[ "$(sim_requests)" = 3 ] || fail "the rerun sent $(( $(sim_requests) - 3 )) requests"
[ "$(jqr '[.tasks[] | select(.cached)] | length')" = 3 ] || fail "not every task was cached"
[ "$(jqr .cost_usd)" = 0 ] || [ "$(jqr .cost_usd)" = 0.0 ] || fail "the rerun cost $(jqr .cost_usd)"
diff -r "$WORK/first" "$WORK/second" >/dev/null || fail "cached outputs differ"
[ "$(jqr '.tasks[0].decisions[0].outcome')" = cached ] || fail "decision outcome"
pass "a rerun reuses all 3 results: no request, no cost (first run \$$first_cost), same outputs"

run_flowrun "$WORK/flow.lua" --fresh two --out "$WORK/third" --json
expect_rc 0 "--fresh"
[ "$(sim_requests)" = 4 ] || fail "--fresh two sent $(( $(sim_requests) - 3 )) requests"
[ "$(jqr '.tasks[] | select(.name == "two") | .cached')" = false ] || fail "two was cached"
run_flowrun "$WORK/flow.lua" --no-cache --out "$WORK/fourth" --json
expect_rc 0 "--no-cache"
[ "$(sim_requests)" = 7 ] || fail "--no-cache sent $(( $(sim_requests) - 4 )) requests"
pass "--fresh TASK and --no-cache send new requests"

# Two endpoints, in either order: the lookup asks both and keeps the key it
# computed last for the dispatch; the tasks go to both (the endpoint asked
# last, whose key is kept, and the other), and the rerun finds every result
# under its key.
for order in local,cloud cloud,local; do
    {
        echo "workflow { name = \"two_$order\" }"
        for ep in ${order/,/ }; do
            if [ "$ep" = local ]; then
                echo "endpoint \"local\" { tier = \"local\", url = \"$SIM_URL/v1\", model = \"l\" }"
            else
                echo "endpoint \"cloud\" { tier = \"cloud\", url = \"$SIM_URL/v1\", model = \"c\","
                echo "                   price = { input = 1, output = 2 } }"
            fi
        done
        echo 'agent "a" {}'
        for i in 1 2 3 4; do echo "task \"t$i\" { agent = \"a\", prompt = \"REPLY: t$i\" }"; done
    } >"$WORK/two_$order.lua"
    before=$(sim_requests)
    run_flowrun "$WORK/two_$order.lua" --out "$WORK/two1_$order" --json
    expect_rc 0 "two endpoints ($order)"
    [ "$(jqr '[.tasks[].endpoint] | unique | length')" = 2 ] ||
        fail "two endpoints ($order): the tasks went to $(jqr '[.tasks[].endpoint] | unique') only"
    [ "$(sim_requests)" = $((before + 4)) ] || fail "two endpoints ($order): $(( $(sim_requests) - before )) requests"
    placed=$(jq -c '[.tasks[] | [.name, .endpoint]]' "$WORK/stdout")
    run_flowrun "$WORK/two_$order.lua" --out "$WORK/two2_$order" --json
    expect_rc 0 "two endpoints ($order), rerun"
    [ "$(jq -c '[.tasks[] | [.name, .endpoint]]' "$WORK/stdout")" = "$placed" ] ||
        fail "two endpoints ($order): the rerun found results under another endpoint's key: $placed, then $(jq -c '[.tasks[] | [.name, .endpoint]]' "$WORK/stdout")"
    [ "$(sim_requests)" = $((before + 4)) ] ||
        fail "two endpoints ($order): the rerun sent $(( $(sim_requests) - before - 4 )) requests"
    [ "$(jqr '[.tasks[] | select(.cached)] | length')" = 4 ] || fail "two endpoints ($order): not every task was cached"
done
pass "two endpoints in either order: each result is found again under its request's key"

# A failed result is never cached: the rerun tries again.
cat >"$WORK/fails.lua" <<LUA
workflow { name = "fails", defaults = { retries = 0 } }
endpoint "e" { tier = "local", url = "$SIM_URL/v1", model = "f" }
agent "a" {}
task "bad" { agent = "a", prompt = "x\nFAULT: 500" }
LUA
run_flowrun "$WORK/fails.lua" --out "$WORK/f1" --json
expect_rc 1 "failing task"
before=$(sim_requests)
run_flowrun "$WORK/fails.lua" --out "$WORK/f2" --json
expect_rc 1 "failing task again"
[ "$(sim_requests)" = $((before + 1)) ] || fail "a failed result was reused"
pass "a failed result is never cached"

# kill -9 and resume. One endpoint, so the uninterrupted run is the same
# every time (the simulator's text depends on the model that answers).
# big_lua URL: the 300-task workflow against the simulator at URL. The URL is
# no part of a result's cache key, so a state made against one simulator
# answers a rerun against another.
big_lua() {
  cat <<LUA
workflow { name = "big" }
endpoint "b" { tier = "cloud", url = "$1/v1", model = "mb", max_parallel = 16,
               price = { input = 1, output = 1 } }
agent "w" {}
for i = 1, 300 do
  local deps = {}
  if i > 20 then deps = { "t" .. (i - 20) } end
  task("t" .. i) { agent = "w", deps = deps, prompt = "Write item " .. i .. (i > 20 and ": {{t" .. (i - 20) .. "}}" or "") }
end
LUA
}
# sim_idle: the simulator has no connection open but the one asking.
sim_idle() { [ "$(sim_stats | jq .open_connections)" = 1 ]; }
restart_sim() {
  kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""
  start_sim --latency 20 --tps 0 "$@"
}
restart_sim
mkdir -p "$WORK/ref"
big_lua "$SIM_URL" >"$WORK/ref/big.lua"
# Each run of the big workflow has its own state: the reference and each trial.
run_flowrun "$WORK/ref/big.lua" --out "$WORK/ref-out" --state "$WORK/ref/state" --json
expect_rc 0 "reference run"
ref_requests=$(sim_requests)
[ "$ref_requests" = 300 ] || fail "reference: $ref_requests requests"
tasks=300 slots=16
# Each trial's simulator leaves request AT unanswered (the fault script's
# hang), so the run cannot have finished when the kill lands, whatever the
# machine's load: the test checks that it did not (the exit status is
# SIGKILL's, the store holds the run as running with tasks not done), then
# that the rerun sends only the tasks the store did not have. AT >= 17: with
# 16 slots, request 17 goes out only after a task finished, so there is
# always something cached to resume from.
for trial in $(seq 1 20); do
  dir="$WORK/trial$trial"
  mkdir -p "$dir"
  at=$(( (RANDOM % (280 - 16)) + 17 ))
  script=$(printf 'ok+%.0s' $(seq 2 "$at"))hang
  record="$dir/requests.jsonl"
  restart_sim --record "$record" --model "mb:faults=$script"
  big_lua "$SIM_URL" >"$dir/big.lua"
  "$FLOWRUN" "$dir/big.lua" --out "$dir/killed" --state "$dir/state" --json >/dev/null 2>"$dir/killed.err" &
  pid=$!
  for _ in $(seq 1 2000); do
    [ "$(lines "$record")" -ge "$at" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  [ "$(lines "$record")" -ge "$at" ] || fail "trial $trial: request $at never came ($(lines "$record") sent)"
  kill -9 "$pid" 2>/dev/null || true
  set +e; wait "$pid" 2>/dev/null; killed_rc=$?; set -e
  [ "$killed_rc" = 137 ] ||
    { cat "$dir/killed.err" >&2; fail "trial $trial: the killed run exited $killed_rc, not by SIGKILL (137): the kill came after it ended"; }
  # What the killed run wrote before it died may still wait in the
  # simulator's sockets: counted once each of its connections is read to
  # its end and closed, so the rerun's requests are told apart from them.
  wait_for sim_idle
  sent_before=$(lines "$record")
  db="$dir/state/state.db"
  run_state=$(sqlite3 "$db" "SELECT group_concat(status) FROM runs")
  done_at_kill=$(sqlite3 "$db" "SELECT count(*) FROM cache")
  [ "$run_state" = running ] || fail "trial $trial: the store holds the killed run as '$run_state', not running"
  [ "$done_at_kill" -ge 1 ] && [ "$done_at_kill" -lt "$tasks" ] ||
    fail "trial $trial: $done_at_kill of $tasks tasks done when killed at request $at"
  run_flowrun "$dir/big.lua" --out "$dir/resumed" --state "$dir/state" --json
  expect_rc 0 "trial $trial rerun"
  diff -r "$WORK/ref-out" "$dir/resumed" >"$WORK/diff" || { head -5 "$WORK/diff"; fail "trial $trial: outputs differ from the uninterrupted run"; }
  total=$(lines "$record")
  resent=$((total - sent_before))
  cached=$(jqr '[.tasks[] | select(.cached)] | length')
  [ "$cached" = "$done_at_kill" ] ||
    fail "trial $trial: the rerun reused $cached results; the store had $done_at_kill"
  [ "$resent" = $((tasks - cached)) ] && [ "$resent" -lt "$tasks" ] ||
    fail "trial $trial: the rerun sent $resent requests for the $((tasks - cached)) tasks not cached"
  [ "$(jqr '[.tasks[] | select(.cached) | .cost_usd] | add == 0')" = true ] ||
    fail "trial $trial: cached tasks were paid for"
  [ "$(jqr '(.cost_usd - ([.tasks[] | select(.cached | not) | .cost_usd] | add)) | fabs < 1e-9')" = true ] ||
    fail "trial $trial: the rerun cost $(jqr .cost_usd), not the sum of its uncached tasks"
  [ "$total" -le $((tasks + slots)) ] ||
    fail "trial $trial: $total requests in all (killed at $sent_before); at most $tasks + $slots in flight"
  echo "   trial $trial: killed (status $killed_rc) after $sent_before requests, request $at unanswered, $done_at_kill done; rerun sent $resent; $cached cached at no cost"
done
pass "20 kill -9 points, each landing while the run was in progress: every rerun sent only the tasks not done, finished all 300 with identical outputs, none paid twice"
