#!/usr/bin/env bash
# The command line: help, version, usage errors, options on either side.
source "$(dirname "$0")/lib.bash"

run_flowrun --help
expect_rc 0 "--help"
grep -q "usage: flowrun" "$WORK/stdout" || fail "--help prints no usage"
pass "--help"

run_flowrun --version
expect_rc 0 "--version"
grep -qE '^flowrun [0-9]+\.[0-9]+\.[0-9]+$' "$WORK/stdout" || fail "--version: $(cat "$WORK/stdout")"
pass "--version"

run_flowrun --frobnicate x.lua
expect_rc 2 "unknown option"
expect_stderr "unknown option '--frobnicate'"
pass "unknown option is a usage error"

run_flowrun
expect_rc 2 "no workflow"
pass "no workflow is a usage error"

run_flowrun --out
expect_rc 2 "missing value"
expect_stderr "needs a value"
pass "an option without its value is a usage error"

# A copy: its save path must not write into the source tree.
cp "$SRC/workflows/private-review.lua" "$WORK/"
run_flowrun --budget lots "$WORK/private-review.lua"
expect_rc 2 "bad number"
pass "a bad number is a usage error"

# Options after the workflow file work as well as before it.
run_flowrun "$WORK/private-review.lua" --sim --sim-latency 5 --json -q --out "$WORK/o1"
expect_rc 0 "options after the file"
[ "$(jqr .status)" = ok ] || fail "status after-file run"
run_flowrun --sim --sim-latency 5 --json -q --out "$WORK/o2" "$WORK/private-review.lua"
expect_rc 0 "options before the file"
pass "options before or after the workflow file"

# A missing key variable is a configuration error, found before anything is sent.
cat >"$WORK/keyed.lua" <<'LUA'
endpoint "cloud" { tier = "cloud", url = "http://127.0.0.1:9/v1", model = "m",
                   api_key_env = "FLOWRUN_TEST_UNSET_KEY" }
agent "a" {}
task "t" { agent = "a", prompt = "hi" }
LUA
unset FLOWRUN_TEST_UNSET_KEY
run_flowrun "$WORK/keyed.lua"
expect_rc 78 "missing key variable"
expect_stderr "FLOWRUN_TEST_UNSET_KEY is not set"
expect_stderr "keyed.lua:4:"
pass "a missing key variable exits 78 with the task's file:line"

# A state store that cannot be written stops the run before anything is
# sent, with the path and exit 74.
touch "$WORK/not-a-dir"
run_flowrun "$WORK/private-review.lua" --sim --state "$WORK/not-a-dir/state" --out "$WORK/o3"
expect_rc 74 "unwritable state store"
expect_stderr "$WORK/not-a-dir/state"
pass "an unwritable state store exits 74 and names the path"
