#!/usr/bin/env bash
# `save` paths are relative and stay inside the workflow's folder: an
# absolute path, one that climbs out with '..', or one through a symbolic
# link that leads out is refused before anything is sent or written, unless
# the user passes --allow-save-anywhere.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0
mkdir -p "$WORK/wf" "$WORK/outside"
cat >"$WORK/endpoints.lua" <<LUA
endpoint "local" { tier = "local", url = "$SIM_URL/v1", model = "local-m", max_parallel = 2 }
LUA

# write_flow SAVE: a one-task workflow in $WORK/wf whose task (line 3) saves to SAVE.
write_flow() {
  cat >"$WORK/wf/flow.lua" <<LUA
workflow { name = "save" }
agent "a" { system = "test agent" }
task "t" { agent = "a", save = "$1", prompt = "REPLY: SAVED-TEXT" }
LUA
}

write_flow "$WORK/outside/abs.txt"
run_flowrun "$WORK/wf/flow.lua" --endpoints "$WORK/endpoints.lua" --out "$WORK/out"
expect_rc 65 "absolute save path"
expect_stderr "flow.lua:3:"
expect_stderr "field 'save'"
expect_stderr "--allow-save-anywhere"
[ ! -e "$WORK/outside/abs.txt" ] || fail "an absolute save path was written"
pass "an absolute save path is refused at load (65, file:line, the field)"

for p in "../escaped.txt" "sub/../../escaped.txt" "./../escaped.txt"; do
  write_flow "$p"
  run_flowrun "$WORK/wf/flow.lua" --endpoints "$WORK/endpoints.lua" --out "$WORK/out"
  expect_rc 65 "save = $p"
  expect_stderr "flow.lua:3:"
  expect_stderr "field 'save'"
  [ ! -e "$WORK/escaped.txt" ] || fail "save = $p wrote outside the workflow's folder"
done
[ "$(sim_requests)" -eq 0 ] || fail "a request was sent for a refused save path"
pass "a save path that climbs out with '..' is refused at load; nothing sent or written"

# A symbolic link inside the folder that leads out.
ln -s "$WORK/outside" "$WORK/wf/link"
write_flow "link/linked.txt"
run_flowrun "$WORK/wf/flow.lua" --endpoints "$WORK/endpoints.lua" --out "$WORK/out"
expect_rc 65 "save through a symbolic link that leads out"
expect_stderr "symbolic link"
expect_stderr "--allow-save-anywhere"
[ ! -e "$WORK/outside/linked.txt" ] || fail "a save through a symbolic link was written outside"
ln -s "$WORK/outside/target.txt" "$WORK/wf/file-link.txt"
write_flow "file-link.txt"
run_flowrun "$WORK/wf/flow.lua" --endpoints "$WORK/endpoints.lua" --out "$WORK/out"
expect_rc 65 "save onto a symbolic link"
[ ! -e "$WORK/outside/target.txt" ] || fail "a save onto a symbolic link was written outside"
[ "$(sim_requests)" -eq 0 ] || fail "a request was sent for a refused save path"
pass "a save path through a symbolic link that leads out is refused"

# A normal relative save, also with '..' that stays inside.
write_flow "out/sub/../ok.txt"
run_flowrun "$WORK/wf/flow.lua" --endpoints "$WORK/endpoints.lua" --out "$WORK/out"
expect_rc 0 "relative save"
[ "$(cat "$WORK/wf/out/ok.txt")" = "SAVED-TEXT" ] || fail "relative save not written"
pass "a relative save path inside the folder is written"

# --allow-save-anywhere lets the user allow all of it.
write_flow "$WORK/outside/abs.txt"
run_flowrun "$WORK/wf/flow.lua" --endpoints "$WORK/endpoints.lua" --out "$WORK/out" --allow-save-anywhere
expect_rc 0 "absolute save with --allow-save-anywhere"
[ "$(cat "$WORK/outside/abs.txt")" = "SAVED-TEXT" ] || fail "absolute save not written with the flag"
write_flow "../escaped.txt"
run_flowrun "$WORK/wf/flow.lua" --endpoints "$WORK/endpoints.lua" --out "$WORK/out" --allow-save-anywhere
expect_rc 0 "'..' save with --allow-save-anywhere"
[ "$(cat "$WORK/escaped.txt")" = "SAVED-TEXT" ] || fail "'..' save not written with the flag"
write_flow "link/linked.txt"
run_flowrun "$WORK/wf/flow.lua" --endpoints "$WORK/endpoints.lua" --out "$WORK/out" --allow-save-anywhere
expect_rc 0 "symbolic-link save with --allow-save-anywhere"
[ "$(cat "$WORK/outside/linked.txt")" = "SAVED-TEXT" ] || fail "symbolic-link save not written with the flag"
pass "--allow-save-anywhere allows them"
"$FLOWRUN" help run | grep -q -- "--allow-save-anywhere" || fail "--help does not document --allow-save-anywhere"
pass "flowrun help run documents --allow-save-anywhere"
