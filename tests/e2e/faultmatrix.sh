#!/usr/bin/env bash
# The fault matrix: every wire fault flowrun-sim has, and faults of the HTTP
# head and framing from a raw TCP server (tests/e2e/fixtures/rawllm.py: half
# a head then close, bad chunked encoding, a head at one byte per second,
# keep-alives only, a huge Retry-After, content null and empty), under all
# three protocols, streamed and not. Each fault task has a dependent on a
# recorded endpoint: no wrong output may reach it (the simulator's --record
# log), and no run may outlive its timeouts (a watchdog, short endpoint
# timeouts, a task timeout). The six runs go in parallel.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0 --record "$WORK/dep.jsonl"
exec {RAW_FD}< <(exec python3 "$SRC/tests/e2e/fixtures/rawllm.py")
RAW_PID=$!
trap 'rc=$?; kill "$RAW_PID" 2>/dev/null || true; set +e; (exit $rc); cleanup' EXIT
read -r -t 20 -u "$RAW_FD" RAW_URL || fail "the raw server did not start"
touch "$WORK/dep.jsonl"

sim_faults=(429 500 503 529 cut hang badjson nousage badutf8 error repeat badschema echokey refusal toolcall thinking)
raw_faults=(closehdr badchunk slowloris keepalive retryafter null empty)
schema='{ type = "object", required = { "x" }, properties = { x = { type = "string" } } }'

base() { if [ "$1" = openai ]; then echo "$2/v1"; else echo "$2"; fi; }

# The workflow of one cell: endpoint "e" is the simulator, "raw" the raw
# server, "dep" (the simulator, recorded) takes every dependent.
cell() {
  local proto=$1 stream=$2 k
  cat <<LUA
workflow { defaults = { retries = 0, timeout = 6 } }
endpoint "e" { tier = "local", protocol = "$proto", url = "$(base "$proto" "$SIM_URL")", model = "m",
  stream = $stream, max_parallel = 32, api_key_env = "SIM_TEST_KEY",
  timeouts = { idle = 1, first_byte = 2 } }
endpoint "raw" { tier = "local", protocol = "$proto", url = "$(base "$proto" "$RAW_URL")", model = "m",
  stream = $stream, max_parallel = 32, timeouts = { idle = 1, first_byte = 2 } }
endpoint "dep" { tier = "local", url = "$SIM_URL/v1", model = "dep", max_parallel = 32 }
agent "a" {}
LUA
  for k in "${sim_faults[@]}"; do
    if [ "$k" = badschema ]; then
      echo "task \"s_$k\" { agent = \"a\", endpoint = \"e\", prompt = \"hi\\nFAULT: $k\", schema = $schema }"
    else
      echo "task \"s_$k\" { agent = \"a\", endpoint = \"e\", prompt = \"hello there\\nFAULT: $k\" }"
    fi
  done
  for k in "${raw_faults[@]}"; do
    echo "task \"r_$k\" { agent = \"a\", endpoint = \"raw\", prompt = \"MODE: $k\" }"
  done
  for k in "${sim_faults[@]/#/s_}" "${raw_faults[@]/#/r_}"; do
    echo "task \"d_$k\" { agent = \"a\", endpoint = \"dep\", deps = { \"$k\" }, prompt = \"REPLY: $proto-$stream-dep-$k [{{$k}}]\" }"
  done
}

# Every cell at once, each under a watchdog well past its timeouts: a task
# takes at most 6 s, and no run needs more than a few of them.
pids=()
for proto in openai ollama anthropic; do
  for stream in true false; do
    c=$proto-$stream
    cell "$proto" "$stream" >"$WORK/$c.lua"
    (
      set +e
      timeout 45 "$FLOWRUN" "$WORK/$c.lua" --no-cache --state "$WORK/state-$c" --out "$WORK/out-$c" \
        --json >"$WORK/$c.json" 2>"$WORK/$c.err"
      echo $? >"$WORK/$c.rc"
    ) &
    pids+=($!)
  done
done
for p in "${pids[@]}"; do wait "$p"; done

for proto in openai ollama anthropic; do
  for stream in true false; do
    c=$proto-$stream
    rc=$(cat "$WORK/$c.rc")
    [ "$rc" != 124 ] || fail "$c: the run outlived its timeouts (killed by the watchdog)"
    [ "$rc" = 1 ] || { cat "$WORK/$c.err" >&2; fail "$c: exit code $rc, expected 1"; }
    leak_check "$WORK/$c.json" "$WORK/$c.err" || fail "$c: the key leaked"
    st() { jq -r ".tasks[] | select(.name==\"$1\") | .status" "$WORK/$c.json"; }
    why() { jq -r ".tasks[] | select(.name==\"$1\") | .reason" "$WORK/$c.json"; }
    for k in "${sim_faults[@]/#/s_}" "${raw_faults[@]/#/r_}"; do
      if [ "$k" = s_nousage ] || [ "$proto-$k" = ollama-s_refusal ]; then
        # Faults that still make an answer (Ollama has no refusal stop: the
        # simulator sends half the text with done_reason "stop"): it reaches
        # its dependent whole.
        [ "$(st "$k")" = ok ] || fail "$c $k: $(st "$k"): $(why "$k")"
        out=$(cat "$WORK/out-$c/$k.txt")
        [ -n "$out" ] || fail "$c $k: empty output"
        grep -qF -- "$c-dep-$k [$out]" "$WORK/dep.jsonl" || fail "$c $k: the dependent did not get the output"
        continue
      fi
      [ "$(st "$k")" = failed ] || fail "$c $k: status $(st "$k"), output '$(cat "$WORK/out-$c/$k.txt" 2>/dev/null)'"
      [ -n "$(why "$k")" ] && [ "$(why "$k")" != null ] || fail "$c $k: no reason"
      [ ! -e "$WORK/out-$c/$k.txt" ] || fail "$c $k: an output file was written"
      [ "$(st "d_$k")" = skipped ] || fail "$c $k: the dependent was $(st "d_$k")"
      ! grep -qF -- "$c-dep-$k " "$WORK/dep.jsonl" || fail "$c $k: a failed output reached a dependent"
    done
    # The timeouts that bound what never answers name themselves.
    why r_slowloris | grep -q "no first byte after 2000 ms" || fail "$c slowloris: $(why r_slowloris)"
    why s_hang | grep -q "no first byte after 2000 ms" || fail "$c hang: $(why s_hang)"
    if [ "$stream" = true ]; then
      why r_keepalive | grep -q "stream idle for 1000 ms" || fail "$c keep-alive: $(why r_keepalive)"
    fi
    why r_retryafter | grep -qE "HTTP 429: (rate_limit_error: )?slow down" || fail "$c Retry-After: $(why r_retryafter)"
    for k in r_null r_empty; do
      why $k | grep -q "the reply is empty" || fail "$c $k: $(why $k)"
    done
    pass "$c: ${#sim_faults[@]} simulator and ${#raw_faults[@]} raw faults fail their tasks; nothing wrong reaches a dependent; the run ends within its timeouts"
  done
done
