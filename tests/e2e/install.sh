#!/usr/bin/env bash
# `cmake --install` to a temporary prefix gives a flowrun that runs every
# example with every built-in policy from a folder outside the source tree,
# with no environment hint (no FLOWRUN_LUA_DIR): the policies are in the
# binary. `flowrun policy show NAME` prints each byte for byte as
# lua/policies/NAME.lua; an unknown policy's error says where it looked.
source "$(dirname "$0")/lib.bash"
BUILD=$(dirname "$FLOWRUN")
[ -f "$BUILD/cmake_install.cmake" ] || fail "$BUILD is not a CMake build directory"
P="$WORK/p"
cmake --install "$BUILD" --prefix "$P" >"$WORK/install.log" || { cat "$WORK/install.log"; fail "cmake --install"; }
DOC="$P/share/doc/flowrun"
for f in bin/flowrun bin/flowrun-guard bin/flowrun-sim; do
  [ -x "$P/$f" ] || fail "not installed: $f"
done
for f in README.md docs/cli.md docs/policies.md docs/testing.md; do
  [ -s "$DOC/$f" ] || fail "not installed: share/doc/flowrun/$f"
done
for wf in "$SRC"/workflows/*.lua; do
  cmp -s "$wf" "$DOC/workflows/$(basename "$wf")" || fail "example $(basename "$wf") not installed"
done
for pol in "$SRC"/lua/policies/*.lua; do
  cmp -s "$pol" "$DOC/lua/policies/$(basename "$pol")" || fail "policy source $(basename "$pol") not installed"
done
"$P/bin/flowrun-sim" --help >/dev/null || fail "the installed flowrun-sim does not start"
pass "cmake --install puts flowrun, flowrun-guard, flowrun-sim, the docs, the examples and the policies under the prefix"

# The installed binary, from a folder of its own: the examples copied from
# the installed docs, nothing of the source tree on the way.
FLOWRUN="$P/bin/flowrun"
mkdir "$WORK/proj"
cp "$DOC"/workflows/*.lua "$WORK/proj/"
cd "$WORK/proj"
case "$PWD" in "$SRC"/*) fail "the project folder is inside the source tree" ;; esac
[ -z "${FLOWRUN_LUA_DIR:-}" ] || fail "FLOWRUN_LUA_DIR is set"
run_flowrun policy list
expect_rc 0 "policy list"
listed=$(awk '{print $1}' "$WORK/stdout" | sort | tr '\n' ' ')
shipped=$(cd "$SRC/lua/policies" && ls ./*.lua | sed 's|^\./||; s|\.lua$||' | sort | tr '\n' ' ')
[ "$listed" = "$shipped" ] || fail "policy list gives [$listed], lua/policies has [$shipped]"
for name in $shipped; do
  run_flowrun policy show "$name"
  expect_rc 0 "policy show $name"
  cmp -s "$WORK/stdout" "$SRC/lua/policies/$name.lua" || fail "policy show $name differs from lua/policies/$name.lua"
done
pass "policy list names [$listed]; policy show prints each byte for byte as lua/policies/NAME.lua"

# strace, where installed, shows the runs open no file of the source tree.
# LeakSanitizer cannot work under ptrace: off for the traced runs of an
# ASan build (every other e2e test checks for leaks).
tracer=()
if command -v strace >/dev/null && strace -f -e trace=file -o /dev/null true 2>/dev/null; then
  tracer=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
    strace -f -e trace=file -o "$WORK/trace")
fi
runs=0
for wf in *.lua; do
  # A workflow with an MCP server needs its server where the file says
  # (agents.lua: under the repository): examples.sh runs it in place.
  grep -q '^mcp "' "$wf" && continue
  approve=() # a checkpoint is answered in advance: a scripted run waits for no one
  grep -q 'approve = true' "$wf" && approve=(--approve-all)
  for name in $shipped; do
    set +e
    "${tracer[@]}" "$FLOWRUN" "$wf" --sim --sim-latency 5 --sim-tps 0 --no-cache --policy "$name" \
      "${approve[@]}" --json -q >"$WORK/stdout" 2>"$WORK/stderr"
    RC=$?
    set -e
    expect_rc 0 "$wf with --policy $name (installed binary)"
    [ "$(jqr .policy)" = "$name" ] || fail "$wf: the report names policy $(jqr .policy), not $name"
    [ "$(jqr '[.tasks[] | select(.status != "ok" and ((.reason // "") | test("^condition false") | not))] | length')" = 0 ] ||
      fail "$wf with $name: a task did not succeed"
    if [ ${#tracer[@]} -gt 0 ] && grep -F "\"$SRC/" "$WORK/trace" >"$WORK/opened"; then
      head -5 "$WORK/opened" >&2
      fail "$wf with $name: the installed binary opened files of the source tree"
    fi
    runs=$((runs + 1))
  done
done
traced="not traced: no strace"
[ ${#tracer[@]} -eq 0 ] || traced="strace: no file of the source tree opened"
pass "the installed flowrun ran $runs example x policy rehearsals from $PWD, exit 0 each ($traced)"

# An unknown policy: the built-in names, the path tried beside the
# workflow, and the name probably meant.
mkdir flows
cat >flows/typo.lua <<'LUA'
workflow { name = "typo", policy = "balance" }
endpoint "e" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m" }
agent "a" {}
task "t" { agent = "a", prompt = "hi" }
LUA
run_flowrun flows/typo.lua --sim
expect_rc 78 "unknown policy in the workflow"
expect_stderr "adaptive, balanced, cost, local-only, speed"
expect_stderr "flows/balance"
expect_stderr "did you mean 'balanced'?"
run_flowrun feature-pipeline.lua --sim --policy mine.lua
expect_rc 78 "unknown policy file"
expect_stderr "no file mine.lua"
run_flowrun policy show balance
expect_rc 2 "policy show of an unknown name"
expect_stderr "did you mean 'balanced'?"
pass "an unknown policy names the built-ins, the file it tried and the nearest name"
