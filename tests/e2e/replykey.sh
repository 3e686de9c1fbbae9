#!/usr/bin/env bash
# A key echoed inside a successful reply (flowrun-sim's `echookey`: the key
# the request sent, at the start of the text or of the first JSON string) is
# redacted where the reply is accepted, under every protocol, streamed or
# not: the output files, the report, the state database (attempts and the
# cache) and the prompts of dependents carry [REDACTED], never the key. A
# second run served from the cache shows the same. lib.bash's sentinel check
# looks at every file left in $WORK, the simulator's request log included;
# the dependents' requests are also checked here by name.
source "$(dirname "$0")/lib.bash"
REC="$WORK/requests.jsonl"
start_sim --latency 5 --tps 0 --record "$REC"

for proto in openai ollama anthropic; do
  url=$SIM_URL
  [ "$proto" = openai ] && url="$SIM_URL/v1"
  for stream in true false; do
    v="$proto-$stream"
    cat >"$WORK/$v.lua" <<LUA
workflow { name = "replykey-$v", defaults = { retries = 0 } }
endpoint "cloud" { tier = "cloud", protocol = "$proto", url = "$url", model = "m-$v",
                   stream = $stream, api_key_env = "FLOWRUN_SENTINEL_KEY",
                   price = { input = 1, output = 1 } }
agent "a" {}
task "echo" { agent = "a", prompt = "Hello from $v.\nFAULT: echookey" }
task "js" { agent = "a", prompt = "Fill it in ($v).\nFAULT: echookey",
            schema = { type = "object", properties = { note = { type = "string" } },
                       required = { "note" } } }
task "after" { agent = "a", deps = { "echo" }, prompt = "Dependent $v of echo: {{echo}}" }
task "after_js" { agent = "a", deps = { "js" },
                  prompt = function(ctx) return "Dependent $v of js: " .. ctx.js.json.note end }
LUA
    for pass_no in 1 2; do
      run_flowrun "$WORK/$v.lua" --out "$WORK/out-$v" --state "$WORK/state" --json
      expect_rc 0 "$v run $pass_no"
      cached=$(jqr '[.tasks[] | select(.cached == true)] | length')
      if [ "$pass_no" = 2 ]; then
        [ "$cached" = 4 ] || fail "$v: the second run was not served from the cache ($cached cached)"
      fi
      # The echoed key became [REDACTED]; the rest of the reply is intact.
      grep -q '^Your key is \[REDACTED\]\. ' "$WORK/out-$v/echo.txt" ||
        fail "$v run $pass_no: echo output '$(head -c 200 "$WORK/out-$v/echo.txt")'"
      [ "$(jq -r '.note' "$WORK/out-$v/js.json" | cut -d' ' -f1)" = "[REDACTED]" ] ||
        fail "$v run $pass_no: js output $(head -c 200 "$WORK/out-$v/js.json")"
      leak_check "$WORK/out-$v" "$WORK/state" || fail "$v run $pass_no: the key is in an output or the store"
    done
    # What the dependents were sent (first run; the second asked nothing).
    for dep in "Dependent $v of echo: " "Dependent $v of js: "; do
      sent=$(grep -F "$dep" "$REC" || true)
      [ "$(printf '%s\n' "$sent" | grep -c .)" = 1 ] || fail "$v: expected one request of '$dep'"
      printf '%s\n' "$sent" | grep -qF "[REDACTED]" || fail "$v: '$dep' request lacks [REDACTED]"
      if printf '%s\n' "$sent" | grep -qF "$SENTINEL_PREFIX"; then
        fail "$v: the key was passed on to a dependent ('$dep')"
      fi
    done
  done
done
[ "$(sim_stats | jq '.models | [.[].faults] | add')" = 12 ] || fail "the simulator did not echo 12 keys"
pass "echoed keys redacted in outputs, report, store, cache hits and dependents' requests (3 protocols x streamed or not)"
