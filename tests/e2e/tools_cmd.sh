#!/usr/bin/env bash
# `flowrun tools WORKFLOW`: every tool a workflow's agents may use, from a
# Lua tool, a command tool and the real filesystem MCP server (from
# tests/mcp/node_modules: tests/deps.sh), as text and as JSON; a pattern
# naming no tool exits 65 with its file:line and the nearest name; a server
# that never answers ends at its start timeout (78) and leaves no process.
source "$(dirname "$0")/lib.bash"
FIX="$SRC/tests/e2e/fixtures/tools"
FS_SERVER="$SRC/tests/mcp/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
command -v node >/dev/null || fail "node is not installed: run tests/deps.sh"
[ -f "$FS_SERVER" ] || fail "the filesystem MCP server is not installed: run tests/deps.sh"

run_watched 60 "flowrun tools" tools "$FIX/tools.lua"
expect_rc 0 "flowrun tools"
grep -q '^MCP server fs: [0-9][0-9]* tools, revision 20[0-9-]*$' "$WORK/stdout" ||
  { cat "$WORK/stdout" >&2; fail "no line for the server and its revision"; }
grep -qx 'shout (lua)' "$WORK/stdout" || fail "the Lua tool is not listed"
grep -qx '  Upper-cases a text.' "$WORK/stdout" || fail "the Lua tool's description is missing"
grep -qx 'lines (command)' "$WORK/stdout" || fail "the command tool is not listed"
grep -qx 'fs.read_text_file (mcp server fs)' "$WORK/stdout" || fail "the server's read_text_file is not listed"
grep -qF '  arguments: {"properties":{"text":{"type":"string"}},"required":["text"],"type":"object"}' \
  "$WORK/stdout" || fail "the Lua tool's schema is not shown compact"
pass "flowrun tools lists Lua, command and MCP tools with their schemas"

run_watched 60 "flowrun tools --json" tools "$FIX/tools.lua" --json
expect_rc 0 "flowrun tools --json"
[ "$(jqr '.[] | select(.name == "shout") | .source')" = lua ] || fail "--json: shout is not lua"
[ "$(jqr '.[] | select(.name == "shout") | .server')" = null ] || fail "--json: shout has a server"
[ "$(jqr '.[] | select(.name == "lines") | .source')" = command ] || fail "--json: lines is not a command"
[ "$(jqr '.[] | select(.name == "lines") | .parameters.required[0]')" = path ] ||
  fail "--json: the command tool's schema"
[ "$(jqr '.[] | select(.name == "fs.read_text_file") | .server')" = fs ] || fail "--json: no fs.read_text_file"
[ "$(jqr '.[] | select(.name == "fs.read_text_file") | .parameters.properties.path.type')" = string ] ||
  fail "--json: the server's inputSchema is not the parameters"
rev=$(jqr '.[] | select(.name == "fs.read_text_file") | .revision')
case "$rev" in 2026-07-28 | 2025-11-25) ;; *) fail "--json: revision '$rev'" ;; esac
[ "$(jqr '[.[] | select(.source == "mcp")] | length')" -gt 5 ] || fail "--json: too few server tools"
pass "flowrun tools --json: names, sources, servers, schemas and the revision ($rev)"

# The same workflow as the example: the repository's own files, through the server.
run_watched 60 "flowrun tools on the example" tools "$SRC/workflows/agents.lua" --json
expect_rc 0 "flowrun tools workflows/agents.lua"
[ "$(jqr '[.[] | select(.name == "fs.list_directory" or .name == "line_count")] | length')" = 2 ] ||
  fail "workflows/agents.lua: its tools are not listed"
pass "flowrun tools workflows/agents.lua"

run_watched 60 "a misspelt tool" tools "$FIX/typo.lua"
expect_rc 65 "a pattern naming no tool"
expect_stderr "typo.lua:9: task 't': tools: 'fs.reed_file'"
expect_stderr "did you mean 'fs.read_file'?"
pass "a misspelt MCP tool exits 65 with file:line and the nearest name"

before=$(pgrep -c -f '^sleep 3607$' || true)
run_watched 30 "a server that never answers" tools "$FIX/nostart.lua"
expect_rc 78 "a server that never answers"
expect_stderr "MCP server 'mute'"
after=$(pgrep -c -f '^sleep 3607$' || true)
[ "$after" -le "$before" ] || fail "the silent server's process outlived flowrun tools"
pass "a server that never answers ends at its start timeout, and is stopped"

run_flowrun tools
expect_rc 2 "no workflow"
run_flowrun tools "$FIX/tools.lua" --bogus
expect_rc 2 "an unknown option"
pass "usage errors exit 2"
