#!/usr/bin/env bash
# What a run looked like, after the fact: the real binary against
# flowrun-sim on a run with a fallback (a local endpoint that refuses
# connections), a retry (a 500), a tool loop and dependencies. The JSON
# report's attempt_log times every attempt, turn and tool call; --trace
# writes a Chrome trace that validates against the Trace Event Format
# (tests/e2e/fixtures/trace_check.py: complete events, lanes that never
# overlap, nesting, paired flows, named processes and threads); --html
# writes one self-contained file that headless Chromium renders with no
# console error and no network request, its screenshot kept in the build
# tree's artefacts/ folder and showing the timeline's bars.
source "$(dirname "$0")/lib.bash"
start_sim --latency 20 --tps 0 --model "flaky:faults=500"
CHECK="$SRC/tests/e2e/fixtures"
ARTEFACTS="$(dirname "$FLOWRUN")/artefacts"
mkdir -p "$ARTEFACTS"

cat >"$WORK/flow.lua" <<LUA
workflow { name = "traced", defaults = { retries = 1 } }
endpoint "local" { tier = "local", url = "http://127.0.0.1:1/v1", model = "x", max_parallel = 1,
                   timeouts = { connect = 1 } }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "fine", max_parallel = 2,
                   api_key_env = "SIM_TEST_KEY", price = { input = 3.0, output = 15.0 } }
endpoint "flaky" { tier = "cloud", url = "$SIM_URL/v1", model = "flaky", max_parallel = 1,
                   api_key_env = "SIM_TEST_KEY", price = { input = 1.0, output = 5.0 } }
tool "word_count" {
  description = "Counts the words of a text",
  parameters = { type = "object", required = { "text" }, properties = { text = { type = "string" } } },
  run = function(args) local n = 0; for _ in args.text:gmatch("%S+") do n = n + 1 end; return tostring(n) end,
}
agent "a" {}
agent "tooled" { tools = { "word_count" } }
task "design" { agent = "a", prompt = "REPLY: a design with <b>tags</b> & <script>alert(1)</script>" }
task "side" { agent = "a", endpoint = "cloud", prompt = "REPLY: side work" }
task "code" { agent = "tooled", deps = { "design" }, endpoint = "flaky", prompt = [[Code it.
@@call word_count {"text": "one two three"}
@@call word_count {"text": "four five"}]] }
task "review" { agent = "a", deps = { "code", "side" }, endpoint = "cloud", prompt = "REPLY: reviewed" }
LUA
run_watched 60 "traced run" "$WORK/flow.lua" --out "$WORK/out" --state "$WORK/state" --json \
  --trace "$WORK/trace.json" --html "$WORK/report.html"
expect_rc 0 "traced run"
cp "$WORK/stdout" "$WORK/report.json"


# ---- the attempt log ----------------------------------------------------
[ "$(jqr '[.tasks[] | select(.name=="design") | .attempt_log[] | "\(.attempt):\(.endpoint):\(.outcome)"] | join(",")')" = \
  "1:local:error,2:flaky:error,3:flaky:ok" ] ||
  fail "design's attempts: $(jqr '.tasks[] | select(.name=="design") | .attempt_log')"
# Every attempt ends after it starts, within the run, one after another per task.
jqr '[.tasks[] | .attempt_log as $l | range(0; $l | length) as $i | $l[$i] |
      select(.start_ms < 0 or .end_ms < .start_ms or ($i > 0 and .start_ms < $l[$i-1].end_ms))] | length' |
  grep -qx 0 || fail "attempt times out of order: $(jqr '[.tasks[].attempt_log]')"
jqr '.makespan_ms as $mk | [.tasks[].attempt_log[] | select(.end_ms > $mk + 1)] | length' | grep -qx 0 ||
  fail "an attempt ends after the run: $(jqr '[.makespan_ms, [.tasks[].attempt_log[].end_ms]]')"
[ "$(jqr '[.tasks[] | select(.name=="code") | .attempt_log[0].turns | length] | .[0]')" = 3 ] ||
  fail "code's turns: $(jqr '.tasks[] | select(.name=="code") | .attempt_log')"
# Each tool call starts after the turn that asked for it ended, before the next one went out.
jqr '.tasks[] | select(.name=="code") | .attempt_log[0].turns as $t | [.tool_calls[] |
     select(.start_ms + 0.5 < $t[.turn - 1].end_ms or .start_ms + .ms > $t[.turn].start_ms + 0.5)] | length' |
  grep -qx 0 || fail "tool calls outside their gap: $(jqr '.tasks[] | select(.name=="code")')"
# A task's cost is the sum of its attempts'.
jqr '[.tasks[] | select(((.cost_usd - ([.attempt_log[].cost_usd] | add // 0)) | fabs) > 1e-9)] | length' |
  grep -qx 0 || fail "attempt costs do not add up"
pass "the attempt log times every attempt, turn and tool call"

# ---- the trace ------------------------------------------------------------
python3 "$CHECK/trace_check.py" "$WORK/trace.json" "$WORK/report.json" || fail "the trace does not validate"
ev() { jq -r "$1" "$WORK/trace.json"; }
[ "$(ev '[.traceEvents[] | select(.cat=="attempt") | .args.kind] | unique | join(",")')" = "fallback,first,retry" ] ||
  fail "retries and fallbacks not visible: $(ev '[.traceEvents[] | select(.cat=="attempt") | .name]')"
[ "$(ev '[.traceEvents[] | select(.cat=="attempt" and .args.outcome=="error") | .cname] | unique | join(",")')" = bad ] ||
  fail "failed attempts are not coloured"
[ "$(ev '[.traceEvents[] | select(.ph=="s")] | length')" = 3 ] || fail "want 3 dependency flows (design->code, code->review, side->review)"
[ "$(ev '[.traceEvents[] | select(.cat=="tool")] | length')" = 2 ] || fail "want 2 tool slices"
[ "$(ev '[.traceEvents[] | select(.cat=="turn" and .args == {})] | length')" = 8 ] || fail "want 8 turn slices (a turn per attempt, 3 for code)"
# Per endpoint (pid 2, 3, ... in the report's order) never more in flight than its capacity.
jq -n --slurpfile t "$WORK/trace.json" --slurpfile r "$WORK/report.json" '[$r[0].endpoints[].max_parallel] as $cap |
   [$t[0].traceEvents[] | select(.ph=="C" and .name=="in flight" and .pid > 1)] | group_by(.pid) |
   map(select(([.[].args.requests] | max) > $cap[.[0].pid - 2])) | length' | grep -qx 0 ||
  fail "an endpoint's in-flight counter passed its capacity"
[ "$(ev '[.traceEvents[] | select(.ph=="C" and .name=="in flight" and .pid==1) | .args.requests] | last')" = 0 ] ||
  fail "the in-flight counter does not end at 0"
[ "$(ev '[.traceEvents[] | select(.ph=="C" and .name=="in flight" and .pid==1) | .args.requests] | max')" -ge 1 ] ||
  fail "the in-flight counter never counted a request"
ev '[.traceEvents[] | select(.ph=="C" and .name=="spend")] | last | .args.usd' >"$WORK/spend"
python3 -c "import sys; a=float(open('$WORK/spend').read()); b=float(sys.argv[1]); sys.exit(abs(a-b) > 1e-9)" \
  "$(jqr .cost_usd)" || fail "the spend counter ends at $(cat "$WORK/spend"), the run cost $(jqr .cost_usd)"
cp "$WORK/trace.json" "$ARTEFACTS/trace.json"
pass "the trace validates: slot lanes, retries and fallbacks, turns, tools, flows, counters"

# ---- the HTML report ------------------------------------------------------
H="$WORK/report.html"
python3 "$CHECK/html_check.py" static "$H" || fail "the HTML report references something outside itself"
grep -q "&lt;b&gt;tags&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;" "$H" || fail "design's output is not escaped"
! grep -q "<b>tags" "$H" || fail "design's output went in raw"
for id in summary timeline dag cost; do grep -q "id=\"$id\"" "$H" || fail "no $id section"; done
[ "$(grep -o '<details class="task">' "$H" | wc -l)" = 4 ] || fail "want a details block per task"
pass "the HTML report is self-contained, escaped and has every section"

if ! command -v chromium >/dev/null; then
  echo "SKIP: chromium is not installed (bash tests/deps.sh): the HTML report was not rendered"
  exit 0
fi
# shot HTML PNG: renders HTML in headless Chromium with its console on
# stderr ($WORK/console) and its requests in a net log ($WORK/net.json).
shot() {
  rm -rf "$WORK/profile"
  timeout 90 chromium --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$WORK/profile" --enable-logging=stderr --v=0 \
    --log-net-log="$WORK/net.json" --screenshot="$2" --window-size=1400,2000 \
    "file://$1" >/dev/null 2>"$WORK/console" || { cat "$WORK/console" >&2; fail "chromium failed on $1"; }
}
# The checks can fail: a page with a console error and a fetch is caught.
printf '<p>x</p><script>nosuch();</script><img src="http://127.0.0.1:9/x.png">\n' >"$WORK/bad.html"
shot "$WORK/bad.html" "$WORK/bad.png"
grep -q ":CONSOLE" "$WORK/console" || fail "the console check does not see a page's error"
! python3 "$CHECK/html_check.py" netlog "$WORK/net.json" >/dev/null || fail "the net log check does not see a page's request"

shot "$H" "$ARTEFACTS/report.png"
! grep ":CONSOLE" "$WORK/console" || fail "the HTML report logged on the console"
python3 "$CHECK/html_check.py" netlog "$WORK/net.json" || fail "the HTML report made a network request"
# Not blank, and the timeline's bar of the refused local attempt is there.
python3 "$CHECK/html_check.py" png "$ARTEFACTS/report.png" d04040 30 || fail "the screenshot does not show the timeline"
pass "headless Chromium renders the HTML report: no console error, no request; screenshot in $ARTEFACTS/report.png"

# A stored report renders the same files later.
run_flowrun report last --state "$WORK/state" --html "$WORK/later.html" --trace "$WORK/later.json"
expect_rc 0 "report last --html --trace"
cmp -s "$WORK/report.html" "$WORK/later.html" || fail "report --html differs from the run's --html"
cmp -s "$WORK/trace.json" "$WORK/later.json" || fail "report --trace differs from the run's --trace"
pass "flowrun report last --html/--trace writes the same files as the run's own flags"
