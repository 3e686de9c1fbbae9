#!/usr/bin/env bash
# A workflow of 64 KiB and more is kept compiled in the user's cache
# (dsl/chunkcache): the second run loads it from there and its outputs are
# the first's; a workflow edited since (one word, the same length) runs as
# edited, and one edited into a syntax error fails at its line, not from
# what was kept. A plan and FLOWRUN_CHUNK_CACHE=0 keep nothing.
source "$(dirname "$0")/lib.bash"
start_sim --tps 0 --model peer:latency=1
WF="$WORK/big.lua"
{
  printf 'endpoint "sim" { tier = "local", url = "%s/v1", model = "peer", max_parallel = 64 }\n' "$SIM_URL"
  printf 'agent "a" {}\n'
  for i in $(seq 1 800); do
    printf 'task "t%d" { agent = "a", prompt = "a prompt long enough to fill the file\\nREPLY: out-%04d" }\n' "$i" "$i"
  done
} >"$WF"
[ "$(stat -c %s "$WF")" -ge 65536 ] || fail "the workflow is under 64 KiB"
CHUNKS="$WORK/.cache/flowrun/chunks"

# outputs_of: the newest run's outputs, a line per task (name: text), sorted.
outputs_of() {
  local d
  d=$(ls -td "$WORK"/.flowrun/out/*/ | head -1)
  for f in "$d"*.txt; do printf '%s: %s\n' "$(basename "$f" .txt)" "$(cat "$f")"; done | sort
}

run_flowrun "$WF" -q --log-level debug
expect_rc 0 "the first run"
expect_stderr "chunk cache kept for $WF"
[ "$(ls "$CHUNKS" | wc -l)" = 1 ] || fail "not one file in $CHUNKS: $(ls -la "$CHUNKS")"
[ "$(stat -c %a "$CHUNKS")" = 700 ] || fail "the cache folder is $(stat -c %a "$CHUNKS")"
first=$(outputs_of)
[ "$(wc -l <<<"$first")" = 800 ] || fail "the first run has $(wc -l <<<"$first") outputs"
grep -qx 't17: out-0017' <<<"$first" || fail "t17's output"
pass "a 64 KiB workflow is kept compiled after its first run"

sleep 1 # a new run id
run_flowrun "$WF" -q --log-level debug
expect_rc 0 "the second run"
expect_stderr "chunk cache hit for $WF"
grep -q "chunk cache kept" "$WORK/stderr" && fail "the second run kept it again"
[ "$(outputs_of)" = "$first" ] || fail "the second run's outputs differ from the first's"
pass "the second run loads it compiled, with the same outputs"

sed -i 's/REPLY: out-0017/REPLY: new-0017/' "$WF"
sleep 1
run_flowrun "$WF" -q --log-level debug
expect_rc 0 "the edited workflow"
expect_stderr "chunk cache miss for $WF"
expect_stderr "chunk cache kept for $WF"
grep -qx 't17: new-0017' <<<"$(outputs_of)" || fail "t17 ran as before the edit: $(outputs_of | grep t17)"
pass "an edit of the same length runs as edited"

line=$(grep -n '"t300"' "$WF" | cut -d: -f1)
sed -i 's/task "t300" { agent/task "t300" ( agent/' "$WF"
run_flowrun "$WF" -q
expect_rc 65 "the workflow with a syntax error"
expect_stderr "$WF:$line:"
pass "an edit into a syntax error fails at its line"

rm -rf "$WORK/.cache"
sed -i 's/task "t300" ( agent/task "t300" { agent/' "$WF"
run_flowrun plan "$WF"
expect_rc 0 "the plan"
[ ! -e "$CHUNKS" ] || fail "a plan kept $(ls "$CHUNKS")"
pass "a plan keeps nothing"

FLOWRUN_CHUNK_CACHE=0 run_flowrun "$WF" -q
expect_rc 0 "the run with the cache off"
[ ! -e "$CHUNKS" ] || fail "FLOWRUN_CHUNK_CACHE=0 kept $(ls "$CHUNKS")"
pass "FLOWRUN_CHUNK_CACHE=0 keeps nothing"
