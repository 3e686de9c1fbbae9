#!/usr/bin/env bash
# Every example workflow runs to exit 0 against the simulator, writes an
# output per task and its save paths.
source "$(dirname "$0")/lib.bash"
for wf in "$SRC"/workflows/*.lua; do
  name=$(basename "$wf" .lua)
  mkdir "$WORK/wf-$name" && cp "$SRC"/workflows/*.lua "$WORK/wf-$name/" # committed files only
  # A workflow with an MCP server (workflows/agents.lua) runs where it is:
  # its server's root and its command tools' folder are the repository, and
  # it saves nothing there (its outputs go to --out, its state to $WORK).
  path="$WORK/wf-$name/$name.lua"
  if grep -q '^mcp ' "$wf"; then
    path=$wf
    grep -q 'save = ' "$wf" && fail "$name: a workflow run in place must not save"
  fi
  # A workflow with a human checkpoint is answered in advance (--approve-all):
  # a scripted run never waits for a person.
  approve=()
  grep -q 'approve = true' "$wf" && approve=(--approve-all)
  run_flowrun "$path" --sim --sim-latency 20 --sim-tps 0 --out "$WORK/out-$name" --json "${approve[@]}"
  expect_rc 0 "$name"
  # One output file per task that answered: a fan-out's own entry has none
  # (its instances do), nor has a task its condition skipped.
  tasks=$(jqr '[.tasks[] | select(.status == "ok" and .instances == null)] | length')
  files=$(ls "$WORK/out-$name" | wc -l)
  [ "$files" -eq "$tasks" ] || fail "$name: $files output files for $tasks tasks"
  [ "$(jqr '[.tasks[] | select(.status != "ok" and ((.reason // "") | test("^condition false|^trigger any_failed") | not))] | length')" = 0 ] || fail "$name: a task did not succeed"
  [ "$(jqr .sim)" = true ] || fail "$name: not a rehearsal"
  for save in $(grep -o 'save = "[^"]*"' "$wf" | sed 's/save = "\(.*\)"/\1/'); do
    [ -s "$WORK/wf-$name/$save" ] || fail "$name: save path $save not written"
  done
  pass "$name runs with --sim: $tasks tasks ok"
done
