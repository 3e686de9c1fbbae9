#!/usr/bin/env bash
# Past runs: `flowrun report last --json` is byte for byte the run's own
# --json; `flowrun runs` lists the runs of two workflows sharing a state
# directory (a killed run too, with what the runs table has); `flowrun
# stats` per endpoint and task type equals a recount from the simulator's
# counters and the runs' reports (two endpoints, a task type that fails
# its quality gate locally, a retry on a 500); a store of the previous
# schema (4) is upgraded and lists its old runs; a report the store refuses
# is exit 74 with the store's message.
source "$(dirname "$0")/lib.bash"
# The cloud model's first request fails (500): the retry goes to it again.
start_sim --latency 5 --tps 0 --model "cloud-m:faults=500"
STATE="$WORK/state"

cat >"$WORK/local-first.lua" <<'LUA'
return { route = function(task, candidates, run)
  for _, c in ipairs(candidates) do if c.name == "local" then return c end end
  return candidates[1]
end }
LUA
endpoints() {
  cat <<LUA
endpoint "local" { tier = "local", url = "$SIM_URL/v1", model = "local-m", max_parallel = 2 }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "cloud-m", max_parallel = 1,
                   price = { input = 1, output = 2 } }
LUA
}
# alpha: three "write" tasks the local model answers, one "review" task
# whose check refuses the local model's text (quality), then the cloud.
{
  echo 'workflow { name = "alpha" }'
  endpoints
  cat <<'LUA'
agent "w" { type = "write" }
agent "r" { type = "review" }
task "w1" { agent = "w", prompt = "Write one." }
task "w2" { agent = "w", prompt = "Write two, a longer one." }
task "w3" { agent = "w", prompt = "Write three." }
task "q1" { agent = "r", prompt = "Review.", deps = { "w1" }, retries = 2,
            check = function(out)
              if out:find("^cloud%-m") then return true end
              return false, "not from the cloud"
            end }
LUA
} >"$WORK/alpha.lua"
# beta: one task without a type.
{
  echo 'workflow { name = "beta" }'
  endpoints
  echo 'agent "plain" {}'
  echo 'task "b1" { agent = "plain", prompt = "Say something." }'
} >"$WORK/beta.lua"
fr() { run_flowrun "$@" --state "$STATE"; }

# 1. The stored report is the run's own output, byte for byte.
fr "$WORK/alpha.lua" --policy "$WORK/local-first.lua" --json
expect_rc 0 "alpha"
cp "$WORK/stdout" "$WORK/alpha.json"
cp "$WORK/stderr" "$WORK/alpha.summary"
ALPHA=$(jq -r .run "$WORK/alpha.json")
[ "$(jq -r '.tasks[] | select(.name == "q1") | .attempts' "$WORK/alpha.json")" = 3 ] ||
  fail "q1 should take 3 attempts (local quality, cloud 500, cloud ok)"
fr report last --json
expect_rc 0 "report last --json"
cmp "$WORK/alpha.json" "$WORK/stdout" || fail "report last --json differs from the run's --json"
fr report "${ALPHA:0:22}" --json
expect_rc 0 "report by prefix"
cmp "$WORK/alpha.json" "$WORK/stdout" || fail "report PREFIX --json differs from the run's --json"
fr report "$ALPHA"
expect_rc 0 "report RUN"
# The run printed its summary on stderr (not a terminal: no colour).
cmp "$WORK/alpha.summary" "$WORK/stdout" || fail "report RUN differs from the run's summary"
[ ! -s "$WORK/stderr" ] || fail "report RUN wrote to stderr: $(cat "$WORK/stderr")"
pass "flowrun report last --json is byte-identical to the run's --json; the summary too, by id or prefix"

# 2. Two workflows, one state directory.
fr "$WORK/beta.lua" --policy "$WORK/local-first.lua" --json -q
expect_rc 0 "beta"
cp "$WORK/stdout" "$WORK/beta.json"
BETA=$(jq -r .run "$WORK/beta.json")
fr runs --json
expect_rc 0 "runs --json"
[ "$(jqr 'map(.workflow) | join(",")')" = beta,alpha ] || fail "runs: $(jqr 'map(.workflow)')"
[ "$(jqr '.[0].id')" = "$BETA" ] && [ "$(jqr '.[1].id')" = "$ALPHA" ] || fail "runs ids: $(jqr 'map(.id)')"
[ "$(jqr '.[1].makespan_ms')" = "$(jq .makespan_ms "$WORK/alpha.json")" ] || fail "alpha's makespan"
[ "$(jqr '.[1].cost_usd')" = "$(jq .cost_usd "$WORK/alpha.json")" ] || fail "alpha's spend"
[ "$(jqr '.[1].local_token_share')" = "$(jq .local_token_share "$WORK/alpha.json")" ] ||
  fail "alpha's local share"
fr runs alpha --json
[ "$(jqr 'map(.id) | join(",")')" = "$ALPHA" ] || fail "runs alpha: $(jqr 'map(.id)')"
fr runs
expect_rc 0 "runs"
grep -q "^$ALPHA  *alpha  .* ok " "$WORK/stdout" || fail "runs text lacks alpha: $(cat "$WORK/stdout")"
grep -q "^$BETA  *beta  .* ok " "$WORK/stdout" || fail "runs text lacks beta: $(cat "$WORK/stdout")"
fr report last --workflow alpha --json
cmp "$WORK/alpha.json" "$WORK/stdout" || fail "report last --workflow alpha"
fr report last --json
cmp "$WORK/beta.json" "$WORK/stdout" || fail "report last is not the newest run"
pass "flowrun runs lists the runs of two workflows sharing a state directory, newest first"

# 3. Unknown and ambiguous ids.
fr report nosuchrun
expect_rc 65 "an unknown run"
expect_stderr "no run 'nosuchrun'"
expect_stderr "'flowrun runs --state $STATE' lists the runs"
fr report 2 --json
expect_rc 65 "an ambiguous prefix"
expect_stderr "is ambiguous"
pass "an unknown run id is exit 65 naming it and saying how to list runs; so is an ambiguous prefix"

# 4. Stats against a recount: the simulator's counters per endpoint, the
# reports' figures per task type.
sim_stats >"$WORK/sim.json"
fr stats --json
expect_rc 0 "stats --json"
cp "$WORK/stdout" "$WORK/stats.json"
for ep in local:local-m cloud:cloud-m; do
  e=${ep%%:*} m=${ep#*:}
  for f in requests:requests tokens.input:input_tokens tokens.output:output_tokens; do
    got=$(jq ".by_endpoint.$e.${f%%:*}" "$WORK/stats.json")
    want=$(jq ".models.\"$m\".${f#*:}" "$WORK/sim.json")
    [ "$got" = "$want" ] || fail "stats $e ${f%%:*} = $got, the simulator counted $want"
  done
done
# The cloud: one 500 and one answer. Local: three writes, q1's first try
# (a reply that failed its quality gate) and beta's task.
stat_is() { jq -e "$1" "$WORK/stats.json" >/dev/null || fail "stats: $1 is false: $(jq -c "${1%% ==*}" "$WORK/stats.json")"; }
stat_is '.by_endpoint.cloud.success_rate == 0.5'
stat_is '.by_endpoint.cloud.quality_pass_rate == 1'
stat_is '.by_endpoint.local.quality_pass_rate == 0.8'
stat_is '.by_endpoint.local.success_rate == 0.8'
stat_is '.by_endpoint.local.local_share == {"attempts": 1, "tokens": 1}'
stat_is '[.by_type.review | .requests, .ok, .replies, .quality_pass_rate] == [3, 1, 2, 0.5]'
stat_is '.by_type.review.local_share.attempts == (1 / 3)'
stat_is '.by_type["-"].requests == 1'
stat_is '.by_type.write.quality_pass_rate == 1
# Spend: every run's report, summed.
want=$(jq -s 'map(.cost_usd) | add' "$WORK/alpha.json" "$WORK/beta.json")
got=$(jq '[.by_endpoint[].cost_usd] | add' "$WORK/stats.json")
jq -en "($got - $want) | fabs < 1e-12" >/dev/null || fail "stats spend $got, the reports say $want"
# The writes all succeeded at once: their latency and time to first token
# quantiles are the reports' (p at the sorted index round(q * (n - 1))).
for k in latency_ms ttft_ms; do
  for q in p50:0.5 p95:0.95; do
    want=$(jq "[.tasks[] | select(.name | startswith(\"w\")) | .$k] | sort |
               .[((${q#*:} * (length - 1)) + 0.5 | floor)]" "$WORK/alpha.json")
    got=$(jq ".by_type.write.$k.${q%%:*}" "$WORK/stats.json")
    jq -en "($got - $want) | fabs < 1e-6" >/dev/null || fail "write $k ${q%%:*} = $got, the report says $want"
  done
done
[ "$(jq .runs "$WORK/stats.json")" = 2 ] || fail "stats runs: $(jq .runs "$WORK/stats.json")"
fr stats --since 2999-01-01 --json
[ "$(jqr '.by_endpoint | length')" = 0 ] || fail "--since in the future still counts attempts"
fr stats
expect_rc 0 "stats"
grep -q "^review  *3 " "$WORK/stdout" || fail "stats text: $(cat "$WORK/stdout")"
fr stats --since yesterday
expect_rc 2 "a malformed --since"
pass "stats per endpoint and task type equal the simulator's counts and the reports' figures"

# 5. A killed run: listed with what the runs table has, and no report.
cat >"$WORK/hang.lua" <<LUA
workflow { name = "hang" }
$(endpoints)
agent "plain" {}
task "h" { agent = "plain", prompt = "FAULT: hang" }
LUA
"$FLOWRUN" "$WORK/hang.lua" --state "$STATE" -q >/dev/null 2>&1 &
HANG=$!
for _ in $(seq 200); do
  [ "$(sim_stats | jq '[.models[].in_flight] | add')" = 1 ] && break
  kill -0 "$HANG" 2>/dev/null || fail "the hanging run ended by itself"
  sleep 0.05
done
[ "$(sim_stats | jq '[.models[].in_flight] | add')" = 1 ] || fail "the hanging request never arrived"
kill -9 "$HANG"
wait "$HANG" 2>/dev/null || true
fr runs --json
[ "$(jqr '.[0].workflow')" = hang ] || fail "the killed run is not listed first: $(jqr 'map(.workflow)')"
[ "$(jqr '.[0].has_report')" = false ] && [ "$(jqr '.[0].makespan_ms')" = null ] &&
  [ "$(jqr '.[0].status')" = crashed ] ||
  fail "the killed run: $(jqr -c '.[0]')"
fr runs
grep -q " hang  .* crashed  .* - *\$" "$WORK/stdout" || fail "the killed run's line: $(cat "$WORK/stdout")"
KILLED=$(sqlite3 "$STATE/state.db" "SELECT id FROM runs WHERE workflow = 'hang'")
fr report "$KILLED"
expect_rc 65 "a killed run's report"
expect_stderr "has no stored report"
fr report last --json
cmp "$WORK/beta.json" "$WORK/stdout" || fail "report last must skip the killed run"
pass "a killed run is listed with '-' for what only a report has; report last is the newest finished run"

# 6. A store of schema version 4 (what the previous flowrun wrote) is
# upgraded and lists its old runs. (Made from the current one: what
# versions 5 to 14 added is taken off again, month_totals and the ledger view
# of version 4 put back.)
cp -r "$STATE" "$WORK/old"
sqlite3 "$WORK/old/state.db" "DROP TRIGGER owners_slots_end; DROP TABLE owner_slots;
  DROP VIEW routing_evidence;
  DROP TABLE routing_history; DROP TABLE routing_bins; ALTER TABLE attempts DROP COLUMN score;
  ALTER TABLE attempts DROP COLUMN complexity;
  DROP TABLE reports; DROP INDEX runs_workflow; DROP VIEW ledger;
  DROP INDEX attempts_slots; ALTER TABLE attempts DROP COLUMN owner_id; DROP TABLE owners;
  DROP TRIGGER attempts_totals_insert; DROP TRIGGER attempts_totals_delete;
  DROP TRIGGER attempts_totals_settle; DROP TRIGGER attempts_totals_move;
  ALTER TABLE attempts DROP COLUMN task_type; ALTER TABLE attempts DROP COLUMN ttft_ms;
  ALTER TABLE attempts DROP COLUMN day; ALTER TABLE attempts DROP COLUMN user_name;
  ALTER TABLE attempts DROP COLUMN host; ALTER TABLE runs DROP COLUMN user_name;
  ALTER TABLE runs DROP COLUMN host; DROP TABLE day_totals;
  CREATE TABLE month_totals (month TEXT PRIMARY KEY, charged_pusd INTEGER NOT NULL DEFAULT 0,
    booked_pusd INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
  INSERT INTO month_totals SELECT month, SUM(CAST(round(cost_usd * 1e12) AS INTEGER)),
    SUM(CASE WHEN outcome != 'pending' THEN CAST(round(cost_usd * 1e12) AS INTEGER) ELSE 0 END)
    FROM attempts GROUP BY month;
  CREATE VIEW ledger AS SELECT a.month, a.at, r.workflow, a.run_id, a.task, a.attempt,
    a.endpoint, a.tier, a.model, a.input_tokens, a.output_tokens, a.cached_tokens,
    a.usage_estimated, a.cost_usd, a.outcome FROM attempts a JOIN runs r ON r.id = a.run_id;
  UPDATE meta SET value = 4 WHERE key = 'schema_version';"
run_flowrun runs --state "$WORK/old" --json
expect_rc 0 "runs on a schema-4 store"
[ "$(jqr 'map(.workflow) | join(",")')" = hang,beta,alpha ] || fail "old runs: $(jqr 'map(.workflow)')"
[ "$(jqr 'map(.has_report) | any')" = false ] || fail "an old run has a report"
[ "$(jqr '.[1].cost_usd')" = "$(jq .cost_usd "$WORK/beta.json")" ] || fail "old run's spend from the runs table"
[ "$(sqlite3 "$WORK/old/state.db" "SELECT value FROM meta WHERE key = 'schema_version'")" = \
  "$(sqlite3 "$STATE/state.db" "SELECT value FROM meta WHERE key = 'schema_version'")" ] ||
  fail "the old store was not upgraded"
run_flowrun stats --state "$WORK/old" --json
expect_rc 0 "stats on the upgraded store"
[ "$(jqr '.by_type["-"].requests')" = "$(jq '[.by_endpoint[].requests] | add' "$WORK/stats.json")" ] ||
  fail "old attempts have no type: $(jqr -c .by_type)"
pass "a schema-4 store upgrades and lists its old runs"

# 7. The report is stored through the run's own connection to its store: a
# store that refuses it (a trigger on reports) fails a run that succeeded
# with 74 and says so; the run itself is booked as it ended, and its
# report still goes to stdout.
fr_refused() { run_flowrun "$@" --state "$WORK/refuse"; }
fr_refused "$WORK/beta.lua" --json
expect_rc 0 "beta, to make the store"
sqlite3 "$WORK/refuse/state.db" "CREATE TRIGGER no_reports BEFORE INSERT ON reports
  BEGIN SELECT RAISE(ABORT, 'reports refused'); END;"
fr_refused "$WORK/beta.lua" --json
expect_rc 74 "a report the store refuses"
expect_stderr "reports refused: the run's report is not stored ('flowrun report' will not show it)"
REFUSED=$(jq -r .run "$WORK/stdout")
[ "$(sqlite3 "$WORK/refuse/state.db" "SELECT status FROM runs WHERE id = '$REFUSED'")" = ok ] ||
  fail "the refused report's run is not booked as it ended"
[ "$(sqlite3 "$WORK/refuse/state.db" "SELECT count(*) FROM reports")" = 1 ] ||
  fail "a refused report was stored"
pass "a report the store refuses is exit 74 with the store's message; the run is booked as it ended"
