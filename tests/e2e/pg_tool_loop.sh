#!/usr/bin/env bash
# The tool loop on a shared PostgreSQL store (docs/team.md): each later turn
# of a loop is reserved in the shared ledger before it is sent (it waits
# for the reservation's commit, as a first request does), on an endpoint
# shared across processes and on one that is not (`shared = false`). The
# output holds the tools' results, every request the simulator served is a
# settled row of the ledger (none left pending), and the ledger's tokens and
# cost are the simulator's usage x price. Skipped (77) without PostgreSQL.
source "$(dirname "$0")/lib.bash"
pg_store_start
start_sim --latency 5 --tps 0
q() { psql -At "$PG_URL" -c "$1"; }

for shared in true false; do
  dir="$WORK/shared-$shared"
  mkdir -p "$dir"
  cat >"$dir/flow.lua" <<LUA
workflow { name = "tool-loop-$shared" }
endpoint "m" { tier = "cloud", url = "$SIM_URL/v1", model = "tool-$shared", max_parallel = 2,
               shared = $shared, api_key_env = "SIM_TEST_KEY", price = { input = 3.0, output = 15.0 } }
tool "word_count" {
  description = "Counts the words of a text",
  parameters = { type = "object", required = { "text" }, properties = { text = { type = "string" } } },
  run = function(args) local n = 0; for _ in args.text:gmatch("%S+") do n = n + 1 end; return tostring(n) end,
}
agent "worker" { tools = { "word_count" } }
task "count" {
  agent = "worker",
  prompt = [[Count.
@@call word_count {"text": "one two three four"}
@@call word_count {"text": "five six"}]],
}
task "again" {
  agent = "worker",
  prompt = [[Count again.
@@call word_count {"text": "seven eight nine"}]],
}
LUA
  run_watched 60 "shared=$shared" "$dir/flow.lua" --out "$dir/out" --state "$PG_URL" --json
  expect_rc 0 "a tool loop on the shared store (shared = $shared)"
  grep -q "tool word_count: 4" "$dir/out/count.txt" && grep -q "tool word_count: 2" "$dir/out/count.txt" ||
    fail "shared=$shared: the tools' results are not in: $(cat "$dir/out/count.txt")"
  run=$(jqr .run)
  stats=$(sim_stats)
  reqs=$(jq --arg m "tool-$shared" '.models[$m].requests' <<<"$stats")
  sim_in=$(jq --arg m "tool-$shared" '.models[$m].input_tokens' <<<"$stats")
  sim_out=$(jq --arg m "tool-$shared" '.models[$m].output_tokens' <<<"$stats")
  [ "$reqs" = 5 ] || fail "shared=$shared: $reqs requests, want 3 turns + 2 turns"
  [ "$(q "SELECT count(*) FROM attempts WHERE run_id = '$run'")" = "$reqs" ] ||
    fail "shared=$shared: $(q "SELECT count(*) FROM attempts WHERE run_id = '$run'") ledger rows for $reqs requests"
  [ "$(q "SELECT count(*) FROM attempts WHERE run_id = '$run' AND outcome = 'pending'")" = 0 ] ||
    fail "shared=$shared: rows left pending"
  [ "$(q "SELECT sum(input_tokens) || '/' || sum(output_tokens) FROM attempts WHERE run_id = '$run'")" = "$sim_in/$sim_out" ] ||
    fail "shared=$shared: the ledger's tokens $(q "SELECT sum(input_tokens) || '/' || sum(output_tokens) FROM attempts WHERE run_id = '$run'") are not the simulator's $sim_in/$sim_out"
  awk -v i="$sim_in" -v o="$sim_out" -v c="$(q "SELECT sum(cost_usd) FROM attempts WHERE run_id = '$run'")" \
    'BEGIN { want = (i * 3.0 + o * 15.0) / 1e6; d = want - c; if (d < 0) d = -d; exit !(d < 1e-9) }' ||
    fail "shared=$shared: the ledger's cost is not the simulator's usage x price"
  pass "shared=$shared: a tool loop's turns on the shared store, each request one settled row at the simulator's counts"
done
