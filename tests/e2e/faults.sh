#!/usr/bin/env bash
# Every scripted fault of flowrun-sim, under every protocol, ends in a failed
# attempt with a reason a user understands (or, for a reply without usage, in
# estimated tokens): never a crash, a hang, or a cut output passed on. Faults
# that pass are retried; a reply that fails its schema escalates.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0 --model flaky:faults=500+cut+ok --model picky:faults=badschema

# fault kind -> words the task's reason must contain
declare -A want=(
  [429]="HTTP 429" [500]="HTTP 500" [503]="HTTP 503" [529]="HTTP 529"
  [cut]="ended before" [hang]="no first byte after 1000 ms" [badjson]="malformed JSON|not valid JSON"
  [badutf8]="malformed JSON|not valid JSON" [repeat]="the reply repeats the same .*256 times in a row"
  [badschema]="does not match the schema: [$]: missing required property 'x'"
)
declare -A error_words=([openai]="error mid-stream" [ollama]="ollama: an error" [anthropic]="overloaded_error")

for proto in openai ollama anthropic; do
  url=$SIM_URL
  [ "$proto" = openai ] && url="$SIM_URL/v1"
  for stream in true false; do
    {
      echo "workflow { defaults = { retries = 0, timeout = 20 } }"
      echo "endpoint \"e\" { tier = \"local\", protocol = \"$proto\", url = \"$url\", model = \"m\","
      echo "  stream = $stream, max_parallel = 16, timeouts = { first_byte = 1, idle = 1 } }"
      echo 'agent "a" {}'
      for k in 429 500 503 529 cut hang badjson nousage badutf8 error repeat; do
        echo "task \"f$k\" { agent = \"a\", prompt = \"hello\\nFAULT: $k\" }"
        echo "task \"after_$k\" { agent = \"a\", deps = { \"f$k\" }, prompt = \"REPLY: got {{f$k}}\" }"
      done
      echo 'task "fbadschema" { agent = "a", prompt = "hi\nFAULT: badschema",'
      echo '  schema = { type = "object", required = { "x" }, properties = { x = { type = "string" } } } }'
      echo 'task "after_badschema" { agent = "a", deps = { "fbadschema" }, prompt = "REPLY: {{fbadschema}}" }'
    } >"$WORK/faults.lua"
    run_flowrun "$WORK/faults.lua" --no-cache --out "$WORK/out-$proto-$stream" --json
    expect_rc 1 "$proto stream=$stream"
    for k in "${!want[@]}"; do
      # Non-streamed replies have no mid-stream events: a cut looks different.
      w=${want[$k]}
      [ "$stream" = false ] && [ "$k" = cut ] && w="the connection closed before the reply ended"
      status=$(jqr ".tasks[] | select(.name==\"f$k\") | .status")
      reason=$(jqr ".tasks[] | select(.name==\"f$k\") | .reason")
      [ "$status" = failed ] || fail "$proto stream=$stream $k: status $status"
      grep -qE -- "$w" <<<"$reason" || fail "$proto stream=$stream $k: reason '$reason' lacks '$w'"
      [ "$(jqr ".tasks[] | select(.name==\"after_$k\") | .status")" = skipped ] ||
        fail "$proto stream=$stream $k: a failed output was passed on"
      [ ! -e "$WORK/out-$proto-$stream/f$k.txt" ] || fail "$proto $k: an output file was written"
    done
    reason=$(jqr '.tasks[] | select(.name=="ferror") | .reason')
    [ "$stream" = false ] && ew="HTTP 500" || ew=${error_words[$proto]}
    case "$reason" in *"$ew"*) ;; *) fail "$proto stream=$stream error: '$reason'" ;; esac
    [ "$(jqr '.tasks[] | select(.name=="fnousage") | .status')" = ok ] || fail "$proto nousage status"
    [ "$(jqr '.tasks[] | select(.name=="fnousage") | .usage_estimated')" = true ] || fail "$proto nousage not estimated"
    [ "$(jqr '.tasks[] | select(.name=="fnousage") | .tokens.output')" -gt 0 ] || fail "$proto nousage booked as free"
    [ "$(jqr '.tasks[] | select(.name=="fbadschema") | .decisions[0].outcome')" = quality ] || fail "$proto badschema outcome"
    pass "$proto stream=$stream: every fault fails its attempt with a clear reason; nothing cut is passed on"
  done
done

# A model that fails twice (500, then a cut stream) and then answers: the
# task succeeds on its third attempt.
cat >"$WORK/retry.lua" <<LUA
workflow { defaults = { retries = 2 } }
endpoint "e" { tier = "local", url = "$SIM_URL/v1", model = "flaky" }
agent "a" {}
task "t" { agent = "a", prompt = "REPLY: third time lucky" }
LUA
run_flowrun "$WORK/retry.lua" --out "$WORK/out-retry" --json
expect_rc 0 "retries"
[ "$(jqr '.tasks[0].attempts')" = 3 ] || fail "attempts $(jqr '.tasks[0].attempts')"
[ "$(cat "$WORK/out-retry/t.txt")" = "third time lucky" ] || fail "retry output"
pass "a 500 and a cut stream are retried; the third attempt's output is the one kept"

# A local model that breaks the schema: the task escalates to the cloud
# endpoint, succeeds there, and the report says why.
cat >"$WORK/escalate.lua" <<LUA
endpoint "local" { tier = "local", url = "$SIM_URL/v1", model = "picky", quality = 0.9 }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "strong", quality = 0.95,
                   price = { input = 1, output = 1 } }
agent "a" {}
task "t" { agent = "a", prompt = "Plan it.", complexity = 0.2,
           schema = { type = "object", required = { "x" }, properties = { x = { type = "string" } } } }
task "use" { agent = "a", deps = { "t" }, prompt = "REPLY: x={{t.json.x}}" }
LUA
run_flowrun "$WORK/escalate.lua" --out "$WORK/out-esc" --json
expect_rc 0 "escalation"
[ "$(jqr '.tasks[0].decisions | map(.endpoint) | join(",")')" = "local,cloud" ] || fail "decisions $(jqr '.tasks[0].decisions')"
[ "$(jqr '.tasks[0].decisions[0].outcome')" = quality ] || fail "first outcome"
jqr '.tasks[0].decisions[0].error' | grep -q "missing required property 'x'" || fail "first error"
[ "$(jqr '.tasks[0].decisions[1].reason')" = quality ] || fail "second reason"
x=$(jq -r .x "$WORK/out-esc/t.json")
[ "$(cat "$WORK/out-esc/use.txt")" = "x=$x" ] || fail "dependent got '$(cat "$WORK/out-esc/use.txt")'"
pass "a schema failure on the local model escalates to the cloud; the dependent gets the valid fields"
