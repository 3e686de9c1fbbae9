#!/usr/bin/env bash
# Text that is not valid UTF-8, NUL bytes, a byte order mark and empty
# workflows: each is a clear error (or, for the BOM, a normal run), never a
# crash and never a request sent with cut or broken text.
source "$(dirname "$0")/lib.bash"
start_sim --record "$WORK/requests.jsonl"

endpoints() {
  cat <<LUA
endpoint "loc" { tier = "local", url = "$SIM_URL/v1", model = "m-local", max_parallel = 2 }
agent "w" { system = "You write." }
LUA
}

# A prompt function that cuts a dependency's text by bytes splits "é": the
# task fails with a message saying so; the run does not crash.
{ endpoints; cat <<'LUA'
task "y" { agent = "w", prompt = "REPLY: café crème brûlée" }
task "z" { agent = "w", deps = { "y" },
           prompt = function(ctx) return "Summarize: " .. ctx.y.text:sub(1, 4) end }
task "ok" { agent = "w", prompt = "REPLY: fine" }
LUA
} >"$WORK/cut.lua"
run_flowrun "$WORK/cut.lua" --json --out "$WORK/out"
expect_rc 1 "a prompt function returning broken UTF-8"
[ "$(jqr '.tasks[] | select(.name=="y") | .status')" = ok ] || fail "y did not run"
[ "$(jqr '.tasks[] | select(.name=="ok") | .status')" = ok ] || fail "an unrelated task did not run"
[ "$(jqr '.tasks[] | select(.name=="z") | .status')" = failed ] || fail "z did not fail"
jqr '.tasks[] | select(.name=="z") | .reason' | grep -q "not valid UTF-8 at byte 14" ||
  fail "z's reason does not name the broken byte: $(jqr '.tasks[] | select(.name=="z") | .reason')"
jqr '.tasks[] | select(.name=="z") | .reason' | grep -q "utf8.offset" || fail "no hint to utf8.offset"
grep -q 'Summarize' "$WORK/requests.jsonl" && fail "the broken prompt was sent"
pass "a prompt function that splits a character fails its task with the byte named"

# The same under --sim (the rehearsal path builds the same cache key).
run_flowrun "$WORK/cut.lua" --sim --out "$WORK/out2" --state "$WORK/st"
expect_rc 1 "the same in a rehearsal"
pass "the same in a rehearsal"

# Literal text: invalid UTF-8 (an escape, a Latin-1 file) and NUL bytes are
# load errors naming the field and line; nothing is sent.
before=$(wc -l <"$WORK/requests.jsonl")
{ endpoints; printf 'task "a" { agent = "w", prompt = "caf\\xe9" }\n'; } >"$WORK/esc.lua"
run_flowrun "$WORK/esc.lua"
expect_rc 65 "an invalid UTF-8 escape in a prompt"
expect_stderr "$WORK/esc.lua:3: task 'a': field 'prompt' is not valid UTF-8 at byte 3"
{ endpoints; printf 'task "a" { agent = "w", prompt = "Caf\xe9 au lait" }\n'; } >"$WORK/latin1.lua"
run_flowrun "$WORK/latin1.lua"
expect_rc 65 "a Latin-1 workflow file"
expect_stderr "save the file as UTF-8"
{ endpoints; printf 'task "a\\0b" { agent = "w", prompt = "hi" }\n'; } >"$WORK/nul.lua"
run_flowrun "$WORK/nul.lua"
expect_rc 65 "a NUL byte in a task name"
expect_stderr "$WORK/nul.lua:3: task name 'a' holds a NUL byte"
printf 'endpoint "loc" { tier = "local", url = "%s/v1", model = "m\\0x" }\nagent "w" { system = "s" }\ntask "a" { agent = "w", prompt = "hi" }\n' "$SIM_URL" >"$WORK/nulmodel.lua"
run_flowrun "$WORK/nulmodel.lua"
expect_rc 65 "a NUL byte in a model name"
expect_stderr "field 'model' holds a NUL byte at byte 1"
[ "$(wc -l <"$WORK/requests.jsonl")" -eq "$before" ] || fail "an invalid workflow sent a request"
pass "invalid UTF-8 and NUL bytes in literals are load errors with file:line; nothing is sent"

# A route that returns a name with a NUL byte costs that decision only.
cat >"$WORK/nulroute.lua" <<'LUA'
return { route = function(task, c)
  if task.name == "a" then return "loc\0x" end
  return c[1]
end }
LUA
{ endpoints; echo 'task "a" { agent = "w", prompt = "REPLY: routed" }'; } >"$WORK/nr.lua"
run_flowrun "$WORK/nr.lua" --policy "$WORK/nulroute.lua" --json --out "$WORK/out3"
expect_rc 0 "a route returning a NUL name"
expect_stderr "route returned a name holding a NUL byte"
[ "$(jqr '.tasks[0].decisions[0].policy')" = default ] || fail "the NUL name was taken as 'loc'"
pass "a route name with a NUL byte is refused, and the default decides"

# A UTF-8 byte order mark is skipped, as lua5.4 does.
{ printf '\xEF\xBB\xBF'; endpoints; echo 'task "a" { agent = "w", prompt = "REPLY: bom ok" }'; } >"$WORK/bom.lua"
run_flowrun "$WORK/bom.lua" --json --out "$WORK/out4"
expect_rc 0 "a workflow starting with a BOM"
[ "$(jqr '.tasks[0].output')" = "bom ok" ] || fail "BOM workflow output"
pass "a UTF-8 byte order mark is skipped"

# Empty workflows are mistakes: exit 65 "no tasks".
: >"$WORK/empty.lua"
echo '-- only a comment' >"$WORK/comments.lua"
endpoints >"$WORK/notask.lua"
for f in empty comments notask; do
  run_flowrun "$WORK/$f.lua"
  expect_rc 65 "$f.lua"
  expect_stderr "no tasks"
done
pass "an empty file, a comments-only file and one with no task exit 65 'no tasks'"
