#!/usr/bin/env bash
# The routing history a policy sees: two runs share a state directory; the
# second run's policy sees the first's attempts in candidate.history (per
# endpoint, task type and complexity band) and candidate.history_all, and
# the record grows within a run as attempts settle; the policy's
# explanation (route's second result) is printed by --explain and kept in
# the report's decision; run.seed is --seed, else derived from the run id;
# `flowrun stats --routing --json` equals a recount from the attempts
# table, and its text lists every key.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0
STATE="$WORK/state"

cat >"$WORK/seer.lua" <<'LUA'
return { route = function(task, candidates, run)
  local pick = candidates[1]
  for _, c in ipairs(candidates) do if c.name == "local" then pick = c end end
  local h, a = pick.history, pick.history_all
  return pick, string.format("saw %s %s n=%d pass=%d fail=%d all=%d rate=%s seed=%d",
    pick.name, tostring(h.type), h.attempts, h.passes, h.fails, a.attempts,
    h.pass_rate and string.format("%.2f", h.pass_rate) or "nil", run.seed)
end }
LUA
cat >"$WORK/flow.lua" <<LUA
workflow { name = "hist" }
endpoint "local" { tier = "local", url = "$SIM_URL/v1", model = "local-m", max_parallel = 1 }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "cloud-m", max_parallel = 1,
                   price = { input = 1, output = 2 } }
agent "w" { type = "write" }
agent "r" { type = "review" }
task "w1" { agent = "w", prompt = "Write one." }
task "w2" { agent = "w", prompt = "Write two.", deps = { "w1" } }
task "w3" { agent = "w", prompt = "Write three.", complexity = 0.9, deps = { "w2" } }
task "q1" { agent = "r", prompt = "Review.", deps = { "w3" }, retries = 0, min_quality = 0.5,
            check = function(out)
              if out:find("^cloud%-m") then return 0.9 end
              return 0.1, "not from the cloud"
            end }
LUA
fr() { run_flowrun "$WORK/flow.lua" --policy "$WORK/seer.lua" --state "$STATE" "$@"; }

# 1. A first run: no evidence yet, then its own attempts as they settle.
fr --explain --seed 7 --json
expect_rc 0 "first run"
expect_stderr "explain: w1 -> local: saw local write n=0 pass=0 fail=0 all=0 rate=nil seed=7  (seer v1, first;"
expect_stderr "explain: w2 -> local: saw local write n=1 pass=1 fail=0 all=1 rate=1.00 seed=7  ("
expect_stderr "explain: w3 -> local: saw local write n=0 pass=0 fail=0 all=2 rate=nil seed=7  ("
expect_stderr "explain: q1 -> local: saw local review n=0 pass=0 fail=0 all=3 rate=nil seed=7  ("
# The review failed its check on the local model and went to the cloud.
[ "$(jqr '.tasks[] | select(.name == "q1") | .endpoint')" = cloud ] || fail "q1 escalates"
[ "$(jqr '.tasks[] | select(.name == "w2") | .decisions[0].explanation')" = \
  "saw local write n=1 pass=1 fail=0 all=1 rate=1.00 seed=7" ] ||
  fail "the report's decision keeps the explanation: $(jqr -c '.tasks[1].decisions')"
[ "$(jqr .seed)" = 7 ] || fail "the report records --seed: $(jqr .seed)"
pass "a first run's policy sees its own attempts as they settle; --explain prints its explanation"

# 2. A second run sees the first's attempts; its seed comes from its run id.
fr --explain --no-cache --json
expect_rc 0 "second run"
expect_stderr "explain: w1 -> local: saw local write n=2 pass=2 fail=0 all=4 rate=1.00 seed="
expect_stderr "explain: q1 -> local: saw local review n=1 pass=0 fail=1 all=7 rate=0.00 seed="
SEED=$(grep -o 'w1 -> local: .* seed=[0-9]*' "$WORK/stderr" | sed 's/.*seed=//')
[ -n "$SEED" ] && [ "$SEED" != 7 ] || fail "a derived seed: '$SEED'"
fr --no-cache --json
grep -q "explain:" "$WORK/stderr" && fail "without --explain nothing is explained on stderr"
SEED2=$(jqr '.tasks[0].decisions[0].explanation' | sed 's/.*seed=//')
[ "$(jqr 'has("seed")')" = false ] || fail "a report without --seed has no seed: its bytes stay"
[ "$SEED2" != "$SEED" ] || fail "another run id, another seed ($SEED2)"
pass "a second run's policy sees the first's attempts, per type and band"

# 3. stats --routing --json equals a recount from the attempts table.
run_flowrun stats --routing --json --state "$STATE"
expect_rc 0 "stats --routing"
cp "$WORK/stdout" "$WORK/routing.json"
got=$(jq -r '.endpoints | to_entries[] | .key as $e | .value.keys[] |
  "\($e) \(.type) \((.band_lo * 5 + 0.5) | floor) \(.passes) \(.fails)"' "$WORK/routing.json" | sort)
want=$(sqlite3 "$STATE/state.db" "SELECT endpoint, COALESCE(task_type, '-'),
    MIN(4, CAST(complexity * 5 AS INTEGER)), SUM(outcome = 'ok'),
    SUM(outcome IN ('quality', 'truncated', 'refused', 'no_answer', 'tool_call'))
    FROM attempts WHERE outcome != 'pending' GROUP BY 1, 2, 3" | tr '|' ' ' | sort)
[ "$got" = "$want" ] || fail "stats --routing: $got, recount: $want"
[ "$(jq '.endpoints.local.keys | map(select(.type == "write")) | map(.attempts) | add' \
  "$WORK/routing.json")" = 9 ] || fail "local wrote 9 times: $(cat "$WORK/routing.json")"
[ "$(jq '.endpoints.local.all.attempts' "$WORK/routing.json")" = 12 ] || fail "local's record"
[ "$(jq '.endpoints.local.keys[] | select(.type == "review") | .pass_rate' \
  "$WORK/routing.json")" = 0 ] || fail "the local review's pass rate"
jq -e '.endpoints.local.keys[] | select(.type == "review") | .pass_rate_95[1] > 0 and
  (.score_mean - 0.1 | fabs) < 1e-9' "$WORK/routing.json" >/dev/null ||
  fail "the interval and the score: $(jq -c .endpoints.local "$WORK/routing.json")"
run_flowrun stats --routing --state "$STATE"
expect_rc 0 "stats --routing text"
grep -q "^local  *review  *0.4-0.6  *3  *0.0%" "$WORK/stdout" || fail "text: $(cat "$WORK/stdout")"
grep -q "^cloud  *review  *0.4-0.6  *3  *100.0%" "$WORK/stdout" || fail "text: $(cat "$WORK/stdout")"
pass "stats --routing --json equals a recount from the attempts; the text lists every key"

# 4. Usage errors.
fr --seed x
expect_rc 2 "--seed x"
expect_stderr "--seed wants an integer"
run_flowrun stats --routing --since 2026-01-01 --state "$STATE"
expect_rc 2 "--routing --since"
pass "--seed takes an integer; --routing takes no --since"
