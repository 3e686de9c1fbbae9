#!/usr/bin/env bash
# The workflows tests/bench/peer.sh runs beside the asyncio peer: its
# mirror of the peer's DAG generator gives the graphs the peer builds (the
# peer's own dag_sha, pinned here: ../shared/bench/asyncio-dag.py printed
# them), and such a workflow runs on flowrun-sim with every task answered,
# its prompt carrying its dependencies' outputs as the peer's does, at most
# its cap in flight, and the simulator's first-request time set.
source "$(dirname "$0")/lib.bash"
GEN="$SRC/tests/bench/peer_run.py"
command -v python3 >/dev/null || fail "python3 is needed"

shas=$(python3 "$GEN" --dag-info '{"shape":"layered","n":5000,"layers":50,"max_deps":3,"seed":42}' \
  '{"shape":"layered","n":1000,"layers":20,"max_deps":3,"seed":42}' '{"shape":"chain","n":200}' |
  jq -r .sha | tr '\n' ' ')
[ "$shas" = "c9b87b4780c1 a925bba26574 7a8056865abf " ] || fail "the DAGs are not the peer's: $shas"
pass "the DAG generator mirrors the peer's"

start_sim --tps 0 --model peer:latency=5 --record "$WORK/requests.jsonl"
[ "$(sim_stats | jq .first_request_unix_us)" = 0 ] || fail "first_request_unix_us before any request"
dag='{"shape":"layered","n":120,"layers":6,"max_deps":3,"seed":7}'
python3 "$GEN" --write-workflow "$dag" 16 "$SIM_URL" "$WORK/layered.lua"
run_flowrun "$WORK/layered.lua" --json -q
expect_rc 0 "the layered workflow"
stats=$(sim_stats)
[ "$(jq .models.peer.requests <<<"$stats")" = 120 ] || fail "requests: $stats"
[ "$(jq .models.peer.peak_in_flight <<<"$stats")" -le 16 ] || fail "over the cap: $stats"
[ "$(jq .first_request_unix_us <<<"$stats")" -gt 0 ] || fail "no first_request_unix_us: $stats"
[ "$(jq '[.tasks[] | select(.status == "ok")] | length' "$WORK/stdout")" = 120 ] || fail "not all ok"
out=$(echo "$WORK"/.flowrun/out/*)
for t in n0 n60 n119; do [ "$(cat "$out/$t.txt")" = "out-$t" ] || fail "$t's output"; done
# n119's prompt as the peer's: its id, each dep's output, the REPLY line.
deps=$(grep -o '^task "n119" { agent = "a", deps = {[^}]*}' "$WORK/layered.lua" | sed 's/.*deps = {//; s/[",}]//g')
[ -n "$deps" ] || fail "n119 has no deps"
want="task n119"
for d in $deps; do want+=$'\n'"input $d: out-$d"; done
want+=$'\n'"REPLY: out-n119"
got=$(jq -r 'select(.body.messages[-1].content | startswith("task n119\n")) | .body.messages[-1].content' \
  "$WORK/requests.jsonl")
[ "$got" = "$want" ] || fail "n119's prompt: [$got], expected [$want]"
pass "a peer.sh workflow runs on flowrun-sim with the peer's prompts"

# The floor peer.sh prints beside each shape: the output files alone, made
# the way a run makes them, left in place, with its CPU on one line.
"${CC:-cc}" -O2 -o "$WORK/files_floor" "$SRC/tests/bench/files_floor.c" || fail "files_floor.c does not compile"
line=$("$WORK/files_floor" "$WORK/floor" 50) || fail "files_floor failed"
[[ $line =~ ^[0-9]+\.[0-9]{6}\ [0-9]+\.[0-9]{6}$ ]] || fail "files_floor printed [$line]"
[ "$(ls "$WORK/floor" | wc -l)" = 50 ] || fail "files_floor left $(ls "$WORK/floor" | wc -l) files, not 50"
for i in 0 49; do [ "$(cat "$WORK/floor/n$i.txt")" = "out-n$i" ] || fail "n$i.txt holds the wrong text"; done
"$WORK/files_floor" "$WORK/floor" 50 2>/dev/null && fail "files_floor wrote into a folder that was there"
pass "files_floor makes one output file per task and prints its CPU"
