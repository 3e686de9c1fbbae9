#!/usr/bin/env bash
# API keys come from the environment only and never come back out: a server
# that echoes the key in its 401 (flowrun-sim's `echokey`) still leaves the
# reason readable, with the key replaced by [REDACTED], in the report, the
# summary, the log (trace, text and JSON) and the state database, under every
# protocol, streamed or not. A literal key in a workflow or an endpoints file
# is refused without being echoed. lib.bash puts the sentinel in every key
# variable and fails any test in which it shows up in a file.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0

# Every file of $WORK so far, and the database in particular, by name.
no_sentinel_in() { # no_sentinel_in WHAT PATH...
  local what=$1
  shift
  leak_check "$@" || fail "$what: the sentinel key leaked"
}

for proto in openai ollama anthropic; do
  url=$SIM_URL
  [ "$proto" = openai ] && url="$SIM_URL/v1"
  for stream in true false; do
    v="$proto-$stream"
    [ "$stream" = true ] && logfmt=text || logfmt=json
    # "echo" waits for "fine": a refused key disables the endpoint for the run.
    cat >"$WORK/$v.lua" <<LUA
workflow { name = "secrets", defaults = { retries = 0 } }
endpoint "cloud" { tier = "cloud", protocol = "$proto", url = "$url", model = "m",
                   stream = $stream, api_key_env = "FLOWRUN_SENTINEL_KEY",
                   price = { input = 1, output = 1 } }
agent "a" {}
task "fine" { agent = "a", prompt = "REPLY: the key was sent and not shown" }
task "echo" { agent = "a", deps = { "fine" }, prompt = "Hello.\nFAULT: echokey" }
task "after" { agent = "a", deps = { "echo" }, prompt = "REPLY: {{echo}}" }
LUA
    run_flowrun "$WORK/$v.lua" --out "$WORK/out-$v" --state "$WORK/state-$v" --json \
      --log-level trace --log-format "$logfmt" --explain
    expect_rc 1 "$v"
    cp "$WORK/stdout" "$WORK/report-$v.json"
    cp "$WORK/stderr" "$WORK/stderr-$v"

    # The key reached the server: the task that needed it succeeded.
    [ "$(jqr '.tasks[] | select(.name=="fine") | .status')" = ok ] || fail "$v: fine failed"
    [ "$(cat "$WORK/out-$v/fine.txt")" = "the key was sent and not shown" ] || fail "$v: fine output"

    # The echoed key is gone; the message around it stays.
    reason=$(jqr '.tasks[] | select(.name=="echo") | .reason')
    case "$reason" in
      *"HTTP 401"*"Incorrect API key provided: [REDACTED]"*) ;;
      *) fail "$v: reason '$reason'" ;;
    esac
    [ "$(jqr '.tasks[] | select(.name=="after") | .status')" = skipped ] || fail "$v: after ran"
    derr=$(jqr '[.tasks[] | select(.name=="echo") | .decisions[].error // empty] | join(" | ")')
    case "$derr" in *"[REDACTED]"*) ;; *) fail "$v: decision error '$derr'" ;; esac
    # The summary on stderr and the log say it too, redacted.
    expect_stderr "echo: "
    grep -F "echo: " "$WORK/stderr" | grep -qF "[REDACTED]" || fail "$v: summary reason"
    [ "$(grep -cF "[REDACTED]" "$WORK/stderr")" -ge 2 ] || {
      cat "$WORK/stderr" >&2
      fail "$v: the log does not report the 401"
    }
    # The state database booked the failed attempt, with the message redacted.
    ls "$WORK/state-$v"/state.db >/dev/null || fail "$v: no state database"
    # (grep reads the files itself: `cat | grep -q` fails under pipefail
    # when grep stops early and cat gets SIGPIPE.)
    grep -aqF "Incorrect API key provided: [REDACTED]" "$WORK/state-$v"/state.db* ||
      fail "$v: the database lacks the redacted 401"
    no_sentinel_in "$v: report, outputs, stderr, state database" \
      "$WORK/report-$v.json" "$WORK/stderr-$v" "$WORK/out-$v" "$WORK/state-$v"
    pass "$v: a key echoed in a 401 is [REDACTED] in the report, summary, log and database"
  done
done
[ "$(sim_stats | jq '.models.m.faults')" = 6 ] || fail "the simulator did not echo six keys"

# A literal key where the name of a variable belongs is refused, and the
# message does not repeat it; nothing is sent.
before=$(sim_stats | jq '.models.m.requests')
cat >"$WORK/literal.lua" <<LUA
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "m",
                   api_key_env = "$FLOWRUN_SENTINEL_KEY" }
agent "a" {}
task "t" { agent = "a", prompt = "REPLY: no" }
LUA
run_flowrun "$WORK/literal.lua" --out "$WORK/out-literal" --json
expect_rc 65 "literal key in a workflow"
expect_stderr "keys are only read from environment variables"
cat >"$WORK/endpoints-literal.lua" <<LUA
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "m",
                   api_key_env = "$FLOWRUN_SENTINEL_KEY" }
LUA
cat >"$WORK/uses.lua" <<LUA
agent "a" {}
task "t" { agent = "a", prompt = "REPLY: no" }
LUA
run_flowrun "$WORK/uses.lua" --endpoints "$WORK/endpoints-literal.lua" --out "$WORK/out-literal"
[ "$RC" -ne 0 ] || fail "a literal key in an endpoints file was accepted"
expect_stderr "keys are only read from environment variables"
[ "$(sim_stats | jq '.models.m.requests')" = "$before" ] || fail "a refused workflow sent a request"
rm -f "$WORK/literal.lua" "$WORK/endpoints-literal.lua" # hold the key on purpose
pass "a literal key in a workflow or an endpoints file is refused and not echoed"
