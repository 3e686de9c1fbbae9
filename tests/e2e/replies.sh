#!/usr/bin/env bash
# Replies end the same whatever the protocol and whether streamed or not:
# an empty or null reply is a failed attempt, never an output (issue 10,
# item 12); the reply cap measures the reply, not the SSE framing (13);
# keep-alive comments and blank NDJSON lines are not activity for `idle`
# (14); a model stuck in a loop fails streamed and whole alike (15).
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0 --record "$WORK/dep.jsonl"
exec {RAW_FD}< <(exec python3 "$SRC/tests/e2e/fixtures/rawllm.py")
RAW_PID=$!
trap 'rc=$?; kill "$RAW_PID" 2>/dev/null || true; set +e; (exit $rc); cleanup' EXIT
read -r -t 20 -u "$RAW_FD" RAW_URL || fail "the raw server did not start"
touch "$WORK/dep.jsonl"

base() { # base PROTO URL: the URL an endpoint of PROTO takes
  if [ "$1" = openai ]; then echo "$2/v1"; else echo "$2"; fi
}

# workflow PROTO STREAM: the header every case shares. Endpoint "raw" is the
# raw server, "s" the simulator in the same protocol, "dep" where dependents
# go (recorded).
workflow() {
  cat <<LUA
workflow { defaults = { retries = 0, timeout = 30 } }
endpoint "raw" { tier = "local", protocol = "$1", url = "$(base "$1" "$RAW_URL")", model = "m",
  stream = $2, max_parallel = 8, timeouts = { first_byte = 5, idle = 1 } }
endpoint "s" { tier = "local", protocol = "$1", url = "$(base "$1" "$SIM_URL")", model = "m",
  stream = $2, max_parallel = 8 }
endpoint "dep" { tier = "local", url = "$SIM_URL/v1", model = "dep", max_parallel = 8 }
endpoint "rawbig" { tier = "local", protocol = "$1", url = "$(base "$1" "$RAW_URL")", model = "m",
  stream = $2, max_parallel = 8, timeouts = { first_byte = 60 } }
agent "a" {}
LUA
}

# part N: whether to run part N (all unless ONLY=N picks one).
part() { [ -z "${ONLY:-}" ] || [ "$ONLY" = "$1" ]; }

# reason NAME / status NAME: of a task in the JSON report.
reason() { jqr ".tasks[] | select(.name==\"$1\") | .reason"; }
status() { jqr ".tasks[] | select(.name==\"$1\") | .status"; }

# --- 12: an empty or null reply is a failed attempt ---------------------------
part 12 && for proto in openai ollama anthropic; do
  for stream in true false; do
    {
      workflow "$proto" "$stream"
      for m in null empty; do
        echo "task \"$m\" { agent = \"a\", endpoint = \"raw\", prompt = \"MODE: $m\" }"
        echo "task \"after_$m\" { agent = \"a\", endpoint = \"dep\", deps = { \"$m\" }, prompt = \"REPLY: after-$m [{{$m}}]\" }"
      done
      echo 'task "blank" { agent = "a", endpoint = "s", prompt = "REPLY: " }'
      echo 'task "after_blank" { agent = "a", endpoint = "dep", deps = { "blank" }, prompt = "REPLY: after-blank [{{blank}}]" }'
    } >"$WORK/empty.lua"
    run_flowrun "$WORK/empty.lua" --no-cache --out "$WORK/out-empty" --json
    expect_rc 1 "$proto stream=$stream empty replies"
    for m in null empty blank; do
      [ "$(status "$m")" = failed ] || fail "$proto stream=$stream $m: status $(status "$m"), output '$(cat "$WORK/out-empty/$m.txt" 2>/dev/null)'"
      grep -q "the reply is empty" <<<"$(reason "$m")" || fail "$proto stream=$stream $m: reason '$(reason "$m")'"
      [ "$(jqr ".tasks[] | select(.name==\"$m\") | .decisions[0].outcome")" = no_answer ] ||
        fail "$proto stream=$stream $m: outcome $(jqr ".tasks[] | select(.name==\"$m\") | .decisions[0].outcome")"
      [ "$(status "after_$m")" = skipped ] || fail "$proto stream=$stream $m: the dependent ran"
      ! grep -q "after-$m" "$WORK/dep.jsonl" || fail "$proto stream=$stream $m: an empty output reached a dependent"
    done
    pass "$proto stream=$stream: null, empty and blank replies fail their attempt (no_answer) and reach no dependent"
  done
done

# --- 13: the cap measures the reply, not the framing --------------------------
part 13 && for proto in openai ollama anthropic; do
  for stream in true false; do
    {
      workflow "$proto" "$stream"
      # 225,000 words of 8 bytes: 1.8 MB of text, over 8 MiB of SSE framing.
      # The raw server builds such a body whole before its first byte (seconds
      # on a loaded machine): "rawbig" waits for it; the cap is what is tested.
      echo 'task "big" { agent = "a", endpoint = "rawbig", prompt = "MODE: words\nWORDS: 225000\nPER: 1" }'
      # 1,100,000 words: 8.8 MB of text, over the 8 MiB reply cap.
      echo 'task "huge" { agent = "a", endpoint = "rawbig", prompt = "MODE: words\nWORDS: 1100000\nPER: 2000" }'
    } >"$WORK/big.lua"
    run_flowrun "$WORK/big.lua" --no-cache --out "$WORK/out-big" --json
    expect_rc 1 "$proto stream=$stream big replies"
    [ "$(status big)" = ok ] || fail "$proto stream=$stream: a 1.8 MB reply failed: $(reason big)"
    [ "$(wc -c <"$WORK/out-big/big.txt")" -eq 1800000 ] || fail "$proto stream=$stream: big.txt has $(wc -c <"$WORK/out-big/big.txt") bytes"
    [ "$(status huge)" = failed ] || fail "$proto stream=$stream: an 8.8 MB reply passed"
    grep -q "the reply is over the 8388608-byte cap" <<<"$(reason huge)" ||
      fail "$proto stream=$stream: huge reason '$(reason huge)'"
    [ ! -e "$WORK/out-big/huge.txt" ] || fail "$proto stream=$stream: huge.txt was written"
    pass "$proto stream=$stream: a 1.8 MB reply passes, one over 8 MiB fails saying the reply is over the cap"
  done
done

# --- 14: keep-alives are not activity ------------------------------------------
part 14 && for proto in openai ollama anthropic; do
  {
    workflow "$proto" true
    echo 'task "ka" { agent = "a", endpoint = "raw", prompt = "MODE: keepalive", timeout = 8 }'
    echo 'task "after_ka" { agent = "a", endpoint = "dep", deps = { "ka" }, prompt = "REPLY: after-ka [{{ka}}]" }'
  } >"$WORK/ka.lua"
  set +e
  timeout 20 "$FLOWRUN" "$WORK/ka.lua" --no-cache --out "$WORK/out-ka" --json >"$WORK/stdout" 2>"$WORK/stderr"
  RC=$?
  set -e
  expect_rc 1 "$proto keep-alives only"
  grep -q "stream idle for 1000 ms" <<<"$(reason ka)" || fail "$proto keep-alive: reason '$(reason ka)'"
  ! grep -q "after-ka" "$WORK/dep.jsonl" || fail "$proto keep-alive: a dependent ran"
  pass "$proto: a stream of keep-alives only fails on the idle timeout"
done

# --- 15: the loop detector sees the same text streamed and whole ---------------
words300=$(printf 'word %.0s' $(seq 300))
mixed=$(for i in $(seq 300); do printf 'word%d word ' "$i"; done)
part 15 && for proto in openai ollama anthropic; do
  for stream in true false; do
    {
      workflow "$proto" "$stream"
      echo 'task "rep" { agent = "a", endpoint = "s", prompt = "hello there\nFAULT: repeat" }'
      echo "task \"same\" { agent = \"a\", endpoint = \"s\", prompt = \"REPLY: $words300\" }"
      echo "task \"mixed\" { agent = \"a\", endpoint = \"s\", prompt = \"REPLY: $mixed\" }"
      echo 'task "after_rep" { agent = "a", endpoint = "dep", deps = { "rep" }, prompt = "REPLY: after-rep [{{rep}}]" }'
    } >"$WORK/loop.lua"
    run_flowrun "$WORK/loop.lua" --no-cache --out "$WORK/out-loop" --json
    expect_rc 1 "$proto stream=$stream loops"
    for t in rep same; do
      [ "$(status $t)" = failed ] || fail "$proto stream=$stream: $t passed"
      grep -q "the reply repeats the same" <<<"$(reason $t)" || fail "$proto stream=$stream $t: reason '$(reason $t)'"
    done
    [ "$(status mixed)" = ok ] || fail "$proto stream=$stream: a reply with a frequent word failed: $(reason mixed)"
    ! grep -q "after-rep" "$WORK/dep.jsonl" || fail "$proto stream=$stream: a loop reached a dependent"
    pass "$proto stream=$stream: a reply stuck in a loop fails, one with a frequent word passes"
  done
done
true
