#!/usr/bin/env bash
# The command line's words: each command's own help, unknown commands with a
# did-you-mean, and typos in options caught before anything runs (--fresh,
# --var, several --endpoints files).
source "$(dirname "$0")/lib.bash"

# ---- help -------------------------------------------------------------------

# flowrun help: every command, with a pointer to each one's own help.
run_flowrun help
expect_rc 0 "flowrun help"
for c in run plan spend help; do
  grep -qE "^  $c " "$WORK/stdout" || fail "flowrun help does not list '$c'"
done
grep -q "flowrun help COMMAND" "$WORK/stdout" || fail "flowrun help: no pointer to a command's help"
cp "$WORK/stdout" "$WORK/help.txt"
run_flowrun --help
expect_rc 0 "--help"
cmp -s "$WORK/stdout" "$WORK/help.txt" || fail "flowrun --help and flowrun help differ"
pass "flowrun help and --help list every command"

# Each command's help: the same text from `help CMD` and `CMD --help`,
# its own usage line and its own options, and not another command's.
check_help() { # CMD USAGE-LINE OPTION... -- OPTION-IT-MUST-NOT-HAVE...
  local cmd=$1 usage=$2
  shift 2
  run_flowrun help "$cmd"
  expect_rc 0 "flowrun help $cmd"
  cp "$WORK/stdout" "$WORK/help-$cmd.txt"
  run_flowrun "$cmd" --help
  expect_rc 0 "flowrun $cmd --help"
  cmp -s "$WORK/stdout" "$WORK/help-$cmd.txt" || fail "flowrun $cmd --help differs from flowrun help $cmd"
  run_flowrun "$cmd" -h
  expect_rc 0 "flowrun $cmd -h"
  cmp -s "$WORK/stdout" "$WORK/help-$cmd.txt" || fail "flowrun $cmd -h differs from flowrun help $cmd"
  head -1 "$WORK/stdout" | grep -qF "usage: $usage" || fail "flowrun help $cmd: first line $(head -1 "$WORK/stdout")"
  local absent=false o
  for o in "$@"; do
    if [ "$o" = -- ]; then absent=true; continue; fi
    if $absent; then
      if grep -qF -- "$o" "$WORK/stdout"; then fail "flowrun help $cmd mentions $o"; fi
    else
      grep -qF -- "$o" "$WORK/stdout" || fail "flowrun help $cmd does not mention $o"
    fi
  done
  pass "flowrun help $cmd, $cmd --help and $cmd -h print $cmd's own help"
}
check_help run "flowrun [run] WORKFLOW.lua" --fresh --no-cache --sim-latency --progress "143" -- --month
check_help plan "flowrun plan WORKFLOW.lua" --sim-latency --sim-tps --policy "Sends nothing" -- --no-cache --fresh --month
check_help spend "flowrun spend" --month --state --json -- --fresh --sim-latency --policy

# A help word after the workflow file works too.
run_flowrun plan "$SRC/workflows/private-review.lua" --help
expect_rc 0 "plan WORKFLOW --help"
cmp -s "$WORK/stdout" "$WORK/help-plan.txt" || fail "flowrun plan WORKFLOW --help is not plan's help"
pass "flowrun plan WORKFLOW --help prints plan's help"

run_flowrun help nosuch
expect_rc 2 "help of an unknown command"
expect_stderr "unknown command 'nosuch'"
run_flowrun help pln
expect_rc 2 "help of a misspelt command"
expect_stderr "did you mean 'plan'?"
pass "flowrun help of an unknown command is a usage error with a suggestion"

# ---- unknown commands -------------------------------------------------------

run_flowrun pln x.lua
expect_rc 2 "flowrun pln"
expect_stderr "unknown command 'pln'"
expect_stderr "did you mean 'plan'?"
if grep -q "cannot read" "$WORK/stderr"; then fail "flowrun pln: says cannot read"; fi
run_flowrun spedn
expect_rc 2 "flowrun spedn"
expect_stderr "unknown command 'spedn'; did you mean 'spend'?"
run_flowrun history
expect_rc 2 "flowrun history"
expect_stderr "unknown command 'history'"
if grep -q "cannot read" "$WORK/stderr"; then fail "flowrun history: says cannot read"; fi
run_flowrun --sim history
expect_rc 2 "flowrun --sim history"
expect_stderr "unknown command 'history'"
pass "an unknown command is a usage error with a suggestion, not 'cannot read'"

# A word that names a file is a workflow, whatever it looks like; a path
# that does not exist is "cannot read".
cat >"$WORK/hello" <<'LUA'
endpoint "gpu" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m" }
agent "a" {}
task "t" { agent = "a", prompt = "REPLY: hi" }
LUA
run_flowrun hello --sim -q --out "$WORK/o-hello"
expect_rc 0 "a workflow file without .lua"
run_flowrun nosuch.lua
expect_rc 65 "a missing workflow file"
expect_stderr "cannot read"
pass "a word that is a file runs as a workflow; a missing .lua file is 'cannot read'"

# ---- typos in options ------------------------------------------------------

cat >"$WORK/wf.lua" <<'LUA'
workflow { name = "wf", vars = { topic = "event loops" } }
endpoint "gpu" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m" }
agent "a" {}
task "outline" { agent = "a", prompt = "REPLY: outline of {{var.topic}}" }
task "intro" { agent = "a", deps = { "outline" }, prompt = "REPLY: intro {{var.extra}}" }
LUA

# --fresh naming no task: a usage error before anything runs.
mkdir "$WORK/fresh" && cp "$WORK/wf.lua" "$WORK/fresh/"
run_flowrun "$WORK/fresh/wf.lua" --sim --fresh outlin --var extra=1 --out "$WORK/o-fresh"
expect_rc 2 "--fresh with no such task"
expect_stderr "--fresh: the workflow has no task 'outlin'; did you mean 'outline'?"
[ ! -e "$WORK/fresh/.flowrun" ] && [ ! -e "$WORK/o-fresh" ] || fail "--fresh typo: the run started"
run_flowrun "$WORK/fresh/wf.lua" --sim --fresh zzzzzz --var extra=1 --out "$WORK/o-fresh"
expect_rc 2 "--fresh with an unrelated name"
expect_stderr "no task 'zzzzzz' (tasks: outline, intro)"
run_flowrun "$WORK/fresh/wf.lua" --sim -q --fresh outline --var extra=1 --out "$WORK/o-fresh"
expect_rc 0 "--fresh with a task"
pass "--fresh naming no task is a usage error with a suggestion (exit 2), nothing runs"

# --var the workflow neither declares nor uses: a warning, the run goes on.
run_flowrun "$WORK/wf.lua" --sim -q --var topc=HTTP --var extra=1 --out "$WORK/o-var1"
expect_rc 0 "an undeclared --var"
expect_stderr "warning: --var 'topc': the workflow does not declare it in workflow { vars = ... } and no {{var.topc}} uses it; did you mean 'topic'?"
run_flowrun "$WORK/wf.lua" --sim -q --var topic=HTTP --var extra=1 --out "$WORK/o-var2"
expect_rc 0 "declared --var"
if grep -q "warning" "$WORK/stderr"; then cat "$WORK/stderr" >&2; fail "a declared or used --var warns"; fi
pass "a --var that the workflow does not declare or use warns, with a suggestion"

# Several --endpoints files: all of them, in order; a name in two files is
# a configuration error naming both.
cat >"$WORK/local.lua" <<'LUA'
endpoint "gpu" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m" }
LUA
cat >"$WORK/cloud.lua" <<'LUA'
endpoint "cloud" { tier = "cloud", url = "http://127.0.0.1:9/v1", model = "m" }
baseline "cloud"
LUA
cat >"$WORK/cloud2.lua" <<'LUA'
endpoint "other" { tier = "cloud", url = "http://127.0.0.1:9/v1", model = "m" }
endpoint "cloud" { tier = "cloud", url = "http://127.0.0.1:9/v1", model = "m2" }
LUA
cat >"$WORK/pinned.lua" <<'LUA'
agent "a" {}
task "l" { agent = "a", endpoint = "gpu", prompt = "REPLY: l" }
task "c" { agent = "a", endpoint = "cloud", prompt = "REPLY: c" }
LUA
run_flowrun "$WORK/pinned.lua" --sim --json -q --endpoints "$WORK/local.lua" --endpoints "$WORK/cloud.lua" --out "$WORK/o-eps"
expect_rc 0 "two --endpoints files"
[ "$(jqr '[.tasks[] | .endpoint] | join(",")')" = "gpu,cloud" ] || fail "two --endpoints: $(jqr '[.tasks[] | .endpoint]')"
[ "$(jqr .baseline)" = cloud ] || fail "two --endpoints: the second file's baseline is lost"
pass "two --endpoints files are both used"

run_flowrun "$WORK/pinned.lua" --sim -q --endpoints "$WORK/cloud.lua" --endpoints "$WORK/local.lua" --endpoints "$WORK/cloud2.lua"
expect_rc 78 "an endpoint in two --endpoints files"
expect_stderr "cloud2.lua:2: endpoint 'cloud' is also declared at $WORK/cloud.lua:1"
pass "an endpoint declared in two --endpoints files is a configuration error naming both"

# Two endpoints files that each name a baseline (the workflow naming none).
cat >"$WORK/local-bl.lua" <<'LUA'
endpoint "gpu" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m" }
baseline "gpu"
LUA
run_flowrun "$WORK/pinned.lua" --sim -q --endpoints "$WORK/local-bl.lua" --endpoints "$WORK/cloud.lua"
expect_rc 78 "a baseline in two --endpoints files"
expect_stderr "cloud.lua:2: baseline is also declared at $WORK/local-bl.lua:2"
pass "a baseline declared in two --endpoints files is a configuration error naming both"

# ---- an unknown baseline ---------------------------------------------------

# In the workflow it is part of the workflow (65); in an endpoints file or
# on the command line it is configuration (78). Nothing is sent either way.
cat >"$WORK/bl.lua" <<'LUA'
endpoint "gpu" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m" }
baseline "clod"
agent "a" {}
task "t" { agent = "a", prompt = "REPLY: x" }
LUA
run_flowrun "$WORK/bl.lua" --sim
expect_rc 65 "an unknown baseline in the workflow"
expect_stderr "bl.lua:2: baseline names unknown endpoint 'clod'"
cat >"$WORK/bl-eps.lua" <<'LUA'
endpoint "cloud" { tier = "cloud", url = "http://127.0.0.1:9/v1", model = "m" }
baseline "clod"
LUA
run_flowrun "$WORK/pinned.lua" --sim --endpoints "$WORK/local.lua" --endpoints "$WORK/bl-eps.lua"
expect_rc 78 "an unknown baseline in an endpoints file"
expect_stderr "bl-eps.lua:2: baseline names unknown endpoint 'clod'; did you mean 'cloud'?"
run_flowrun "$WORK/hello" --sim --baseline gpx
expect_rc 78 "an unknown --baseline"
expect_stderr "--baseline: no endpoint named 'gpx'"
pass "an unknown baseline: 65 in the workflow, 78 in an endpoints file or --baseline"
