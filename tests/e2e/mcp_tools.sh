#!/usr/bin/env bash
# Agents whose tools come from real MCP servers from npm (installed by
# tests/deps.sh into tests/mcp/node_modules), driven by flowrun-sim playing
# a model that asks for specific calls: the final output holds what the
# real server returned, under every protocol, streamed and not; the
# protocol's corners through server-everything; and no child process
# survives the run: after a normal end, SIGINT, SIGTERM and kill -9 of
# flowrun (checked in the process table).
source "$(dirname "$0")/lib.bash"
MODS="$SRC/tests/mcp/node_modules/@modelcontextprotocol"
FS_JS="$MODS/server-filesystem/dist/index.js"
EV_JS="$MODS/server-everything/dist/index.js"
[ -f "$FS_JS" ] && [ -f "$EV_JS" ] || fail "the MCP servers are not installed: run tests/deps.sh"
command -v node >/dev/null || fail "node is not installed: run tests/deps.sh"
start_sim --latency 5 --tps 0

PROJ="$WORK/proj-$$"
mkdir -p "$PROJ/src"
echo "The answer is forty-two, said the notes $$." >"$PROJ/notes.txt"
echo "int main(void) { return 0; }" >"$PROJ/src/main.c"

# ---- the filesystem server, every protocol, streamed and not -------------
run_variant() { # run_variant PROTOCOL STREAM
  local proto=$1 stream=$2 url=$SIM_URL
  [ "$proto" = openai ] && url="$SIM_URL/v1"
  local dir="$WORK/$proto-$stream"
  mkdir -p "$dir"
  cat >"$dir/flow.lua" <<LUA
workflow { name = "mcp-tools" }
endpoint "m" { tier = "local", protocol = "$proto", url = "$url", model = "mcp-model",
               stream = $stream, max_parallel = 2 }
mcp "fs" { command = { "node", "$FS_JS", "$PROJ" } }
agent "coder" { system = "You read code.", tools = { "fs.*" } }
task "read" {
  agent = "coder",
  prompt = [[Read the notes and list the project.
@@call fs.read_text_file {"path": "$PROJ/notes.txt"} | fs.list_directory {"path": "$PROJ"}]],
}
LUA
  run_watched 90 "$proto stream=$stream" "$dir/flow.lua" --out "$dir/out" --state "$dir/state" --json
  expect_rc 0 "$proto stream=$stream"
  local out="$dir/out/read.txt"
  grep -q "tool fs_read_text_file: The answer is forty-two, said the notes $$." "$out" ||
    fail "$proto stream=$stream: the file's text is not in: $(cat "$out")"
  grep -q "notes.txt" "$out" && grep -q "\[DIR\] src" "$out" ||
    fail "$proto stream=$stream: the listing is not in: $(cat "$out")"
  # Parallel calls end in any order.
  [ "$(jqr '[.tasks[0].tool_calls[] | "\(.name):\(.source):\(.server):\(.ok)"] | sort | join(",")')" = \
    "fs.list_directory:mcp:fs:true,fs.read_text_file:mcp:fs:true" ] ||
    fail "$proto stream=$stream: tool calls $(jqr '.tasks[0].tool_calls')"
  pass "$proto stream=$stream: the output holds what the filesystem server returned"
}
for proto in openai ollama anthropic; do
  for stream in true false; do run_variant "$proto" "$stream"; done
done
! pgrep -f "$PROJ" >/dev/null || fail "a server outlived its run: $(pgrep -af "$PROJ")"
pass "after a normal end no server is left running"

# ---- the protocol's corners: server-everything ---------------------------
cat >"$WORK/ev.lua" <<LUA
workflow { name = "mcp-everything" }
endpoint "m" { tier = "local", protocol = "openai", url = "$SIM_URL/v1", model = "ev-model",
               max_parallel = 4 }
mcp "ev" { command = { "node", "$EV_JS", "stdio" }, timeout = 2 }
agent "a" { tools = { "ev.echo", "ev.get-sum", "ev.trigger-long-running-operation" } }
task "calls" { agent = "a", timeout = 60, prompt = [[Use the server.
@@call ev.echo {"message": "hello from flowrun"} | ev.get-sum {"a": 2, "b": 40}
@@call ev.get-sum {"a": "two"}
@@call ev.trigger-long-running-operation {"duration": 30, "steps": 3}]] }
LUA
run_watched 90 "server-everything" "$WORK/ev.lua" --out "$WORK/ev-out" --json
expect_rc 0 "server-everything"
out="$WORK/ev-out/calls.txt"
grep -q "tool ev_echo: .*hello from flowrun" "$out" || fail "no echo in: $(cat "$out")"
grep -q "tool ev_get-sum: .*42" "$out" || fail "no sum in: $(cat "$out")"
grep -Eq "tool ev_get-sum:? error: .*a" "$out" || fail "bad arguments were not refused: $(cat "$out")"
grep -Eq "tool ev_trigger-long-running-operation:? error: .*timed out after 2 s" "$out" ||
  fail "the long-running tool did not time out: $(cat "$out")"
pass "server-everything: calls return the server's results, bad arguments are refused before a call, a long-running tool times out"

# ---- no child outlives flowrun ------------------------------------------
# A run in the middle of a tool call: the MCP server up and a command tool
# running, each with a marker in its argv; then flowrun ends or is killed.
mark="flowrun-child-$$-$RANDOM"
mkdir -p "$WORK/$mark"
cat >"$WORK/kill.lua" <<LUA
workflow { name = "mcp-kill" }
endpoint "m" { tier = "local", protocol = "openai", url = "$SIM_URL/v1", model = "kill-model",
               max_parallel = 2 }
mcp "fs" { command = { "node", "$FS_JS", "$WORK/$mark" } }
tool "nap" { description = "Naps", parameters = { type = "object" },
             command = { "python3", "-c", "import time; time.sleep(300)", "$mark" }, timeout = 600 }
agent "a" { tools = { "fs.*", "nap" } }
task "long" { agent = "a", timeout = 600, prompt = [[Nap.
@@call nap {}]] }
LUA
wait_for() { # wait_for PATTERN SECONDS: true once a process matches
  local i
  for i in $(seq 1 $(($2 * 10))); do
    pgrep -f "$1" >/dev/null && return 0
    sleep 0.1
  done
  return 1
}
gone_within() { # gone_within PATTERN SECONDS: true once no process matches
  local i
  for i in $(seq 1 $(($2 * 10))); do
    pgrep -f "$1" >/dev/null || return 0
    sleep 0.1
  done
  return 1
}
fail_kill() { kill -9 "$fpid" 2>/dev/null; fail "$@"; } # its guards end the children
for sig in INT TERM KILL; do
  "$FLOWRUN" "$WORK/kill.lua" --out "$WORK/kill-out" --state "$WORK/kill-state" \
    >"$WORK/kill.stdout" 2>"$WORK/kill.stderr" &
  fpid=$!
  wait_for "time.sleep.300. $mark" 30 || { cat "$WORK/kill.stderr"; fail_kill "SIG$sig: the command tool never started"; }
  wait_for "$WORK/$mark" 30 || fail_kill "SIG$sig: the MCP server never started"
  before=$(pgrep -f "$mark" | wc -l)
  kill -s "$sig" "$fpid"
  set +e
  wait "$fpid"
  rc=$?
  set -e
  case $sig in INT) want=130 ;; TERM) want=143 ;; KILL) want=137 ;; esac
  [ "$rc" -eq "$want" ] || { cat "$WORK/kill.stderr"; fail "SIG$sig: flowrun exited $rc, want $want"; }
  gone_within "$mark" 10 || fail "SIG$sig: children outlived flowrun: $(pgrep -af "$mark")"
  pass "SIG$sig of flowrun mid tool call: exit $rc, all $before children with the marker are gone"
done
