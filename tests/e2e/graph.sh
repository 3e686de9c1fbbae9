#!/usr/bin/env bash
# `flowrun graph WORKFLOW --format dot|mermaid [--run RUN|last]`: the task
# graph of tests/e2e/fixtures/graph/graph.lua as Graphviz dot and as a
# Mermaid flowchart, byte for byte as the golden files (dot parses it when
# Graphviz is installed); after a run against flowrun-sim, --run last
# colours each task by how it ended (ok, failed, no request for the task
# it skipped) and labels it with its endpoint and cost, read from the store.
source "$(dirname "$0")/lib.bash"
FIX="$SRC/tests/e2e/fixtures/graph"
start_sim --model m1
cat >endpoints.lua <<EOT
endpoint "simlocal" { tier = "local", protocol = "openai", url = "$SIM_URL/v1", model = "m1",
                      max_parallel = 2 }
EOT

run_flowrun graph "$FIX/graph.lua"
expect_rc 0 "flowrun graph (dot)"
diff -u "$FIX/graph.dot" "$WORK/stdout" || fail "the dot output differs from graph.dot"
cp "$WORK/stdout" "$WORK/graph.dot"
if command -v dot >/dev/null; then
  dot -Tsvg "$WORK/graph.dot" >"$WORK/graph.svg" || fail "dot does not parse the output"
  grep -q '<svg' "$WORK/graph.svg" || fail "dot made no SVG"
  pass "the dot output is graph.dot, and Graphviz renders it"
else
  pass "the dot output is graph.dot (Graphviz not installed: not rendered)"
fi

run_flowrun graph "$FIX/graph.lua" --format mermaid
expect_rc 0 "flowrun graph --format mermaid"
diff -u "$FIX/graph.mmd" "$WORK/stdout" || fail "the Mermaid output differs from graph.mmd"
# Its structure: a front matter title, `flowchart LR`, one node per task
# (the fan-out a subroutine [[...]]), edges only between declared nodes.
mmd_check() {
  awk '
    NR == 1 && $0 != "---" { print "no front matter"; bad = 1 }
    /^flowchart LR$/ { chart = 1; next }
    !chart { next }
    /^  t[0-9]+\["[^"]*"\]$/ || /^  t[0-9]+\[\["[^"]*"\]\]$/ {
      id = $1; sub(/\[.*/, "", id); nodes[id] = 1; n++; next }
    /^  t[0-9]+ --> t[0-9]+$/ { if (!($1 in nodes) || !($3 in nodes)) { print "edge to an undeclared node: " $0; bad = 1 }; e++; next }
    /^  classDef [a-z]+ fill:#[0-9a-f]+,stroke:#[0-9a-f]+$/ { defs[$2] = 1; next }
    /^  class t[0-9]+ [a-z]+$/ { if (!($2 in nodes) || !($3 in defs)) { print "bad class line: " $0; bad = 1 }; next }
    { print "not Mermaid flowchart syntax: " $0; bad = 1 }
    END { if (!chart) print "no flowchart line"; printf "%d %d\n", n, e; exit (bad || !chart) }
  ' "$1"
}
shape=$(mmd_check "$WORK/stdout") || fail "Mermaid structure: $shape"
[ "$shape" = "6 6" ] || fail "Mermaid: expected 6 nodes and 6 edges, got $shape"
grep -qx '  t2\[\["each<br/>agent: critic<br/>foreach: plan.json.items"\]\]' "$WORK/stdout" ||
  fail "Mermaid: the fan-out is not marked"
pass "the Mermaid output is graph.mmd: 6 nodes (the fan-out marked), 6 edges"

run_flowrun graph "$FIX/graph.lua" --run last
expect_rc 74 "--run last before any run"
expect_stderr "no state store"
pass "--run last without a store exits 74 and says so"

run_watched 60 "the fixture's run" "$FIX/graph.lua" -q
expect_rc 1 "the fixture's run (broken fails)"
run_flowrun graph "$FIX/graph.lua" --run last
expect_rc 0 "flowrun graph --run last"
cp "$WORK/stdout" "$WORK/run.dot"
line() { grep -E "^  t$1 \[" "$WORK/run.dot" || fail "no node t$1"; }
green='fillcolor="#c8e6c9"' red='fillcolor="#ffcdd2"' grey='fillcolor="#eeeeee"'
for t in 0 1 3; do
  line $t | grep -qF "\\nok · simlocal · \$0\"" || fail "t$t is not labelled ok with its endpoint and cost"
  line $t | grep -qF "$green" || fail "t$t is not green"
done
line 2 | grep -qF 'ok · 2 instances · simlocal · $0' || fail "the fan-out does not sum its instances"
line 4 | grep -qF 'failed (error) · simlocal' || fail "broken is not labelled failed"
line 4 | grep -qF "$red" || fail "broken is not red"
line 5 | grep -qF '\nno request"' || fail "the skipped task is not 'no request'"
line 5 | grep -qF "$grey" || fail "the skipped task is not grey"
grep -c -- ' -> ' "$WORK/run.dot" | grep -qx 6 || fail "--run changed the edges"
if command -v dot >/dev/null; then dot -Tsvg "$WORK/run.dot" >/dev/null || fail "dot does not parse --run's output"; fi
pass "--run last (dot): ok green with endpoint and cost, the failure red, the skipped grey"

run_flowrun graph "$FIX/graph.lua" --run last --format mermaid
expect_rc 0 "flowrun graph --run last --format mermaid"
shape=$(mmd_check "$WORK/stdout") || fail "Mermaid --run structure: $shape"
for want in 't0 ok' 't1 ok' 't2 ok' 't3 ok' 't4 failed' 't5 none'; do
  grep -qx "  class $want" "$WORK/stdout" || fail "Mermaid --run: no 'class $want'"
done
pass "--run last (Mermaid): a class per task by status, the structure intact"

run_id=$(sqlite3 .flowrun/state.db 'SELECT id FROM runs LIMIT 1')
run_flowrun graph "$FIX/graph.lua" --run "$run_id" --format mermaid
expect_rc 0 "flowrun graph --run ID"
grep -qx '  class t4 failed' "$WORK/stdout" || fail "--run ID does not read that run"
run_flowrun graph "$FIX/graph.lua" --run nosuchrun
expect_rc 74 "--run of an unknown run"
expect_stderr "no run 'nosuchrun'"
run_flowrun graph "$FIX/graph.lua" --format svg
expect_rc 2 "--format svg"
pass "--run ID reads that run; an unknown run exits 74, an unknown format 2"
