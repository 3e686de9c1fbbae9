#!/usr/bin/env bash
# Live progress on a terminal: flowrun runs in a real pseudo-terminal (a
# private tmux server) against slow endpoints (1.5 s before each reply);
# mid-run the screen shows the running tasks with elapsed times, the queue
# and the footer, and a resize does not break it; after the run the block
# is gone (the screen holds the summary and no block line), the cursor is
# shown again (the raw output ends with the show-cursor sequence after the
# last hide) and the exit code is 0. The same run piped with --progress
# prints plain `task=NAME status=...` lines and no escape code at all.
# Ctrl-C mid-run clears the block and shows the cursor (exit 130).
source "$(dirname "$0")/lib.bash"
command -v tmux >/dev/null || fail "tmux is not installed (tests/deps.sh installs it)"
start_sim --latency 1500 --tps 0
cat >"$WORK/flow.lua" <<LUA
workflow { name = "live", defaults = { retries = 0, timeout = 60 } }
agent "a" {}
endpoint "loc" { tier = "local", url = "$SIM_URL/v1", model = "m_loc", max_parallel = 2 }
task "alpha" { agent = "a", endpoint = "loc", prompt = "REPLY: alpha" }
task "beta" { agent = "a", endpoint = "loc", prompt = "REPLY: beta" }
task "gamma" { agent = "a", endpoint = "loc", prompt = "REPLY: gamma" }
task "delta" { agent = "a", endpoint = "loc", deps = { "alpha" }, prompt = "REPLY: delta" }
LUA
SOCK="$WORK/tmux.sock"
tm() { tmux -S "$SOCK" "$@"; }
trap 'rc=$?; tm kill-server 2>/dev/null || true; (exit $rc); cleanup' EXIT
# The pane waits for the go signal, so the raw output is captured from the
# first byte flowrun writes.
tm -f /dev/null new-session -d -s t -x 100 -y 20 \
  "tmux -S '$SOCK' wait-for go; TERM=xterm-256color '$FLOWRUN' '$WORK/flow.lua' --state '$WORK/st' --out '$WORK/o'; echo \"RC=\$?\" >'$WORK/rc'; tmux -S '$SOCK' wait-for -S ended; sleep 600"
tm pipe-pane -t t -o "cat >>'$WORK/raw'"
tm wait-for -S go
screen() { tm capture-pane -p -t t >"$WORK/screen"; }
shows_running() { screen; grep -Eq '^  (alpha|beta) +loc +[0-9]+\.[0-9]s' "$WORK/screen"; }
wait_for shows_running
grep -q 'queue: ' "$WORK/screen" || fail "no queue line mid-run: $(cat "$WORK/screen")"
grep -q 'done [0-9]/4, 0 failed, spent' "$WORK/screen" || fail "no footer mid-run: $(cat "$WORK/screen")"
# A resize mid-run: narrower and shorter; the block keeps within it.
tm resize-window -t t -x 50 -y 6
shows_narrow() { screen; grep -q 'done [0-9]/4' "$WORK/screen"; }
wait_for shows_narrow
awk 'length > 50 { bad = 1 } END { exit bad }' "$WORK/screen" || fail "a line wider than the resized terminal"
tm resize-window -t t -x 100 -y 20
ended() { [ -s "$WORK/rc" ]; }
wait_for ended
[ "$(cat "$WORK/rc")" = "RC=0" ] || fail "exit code: $(cat "$WORK/rc")"
screen
grep -q 'done 4/4' "$WORK/screen" || fail "no summary after the run: $(cat "$WORK/screen")"
if grep -Eq 'queue: |^  (alpha|beta|gamma|delta) +loc ' "$WORK/screen"; then
  fail "block lines left on the terminal: $(cat "$WORK/screen")"
fi
# The cursor was hidden while the block showed and is shown at the end.
grep -qF $'\e[?25l' "$WORK/raw" || fail "the block never hid the cursor"
last_hide=$(grep -obF $'\e[?25l' "$WORK/raw" | tail -1 | cut -d: -f1)
last_show=$(grep -obF $'\e[?25h' "$WORK/raw" | tail -1 | cut -d: -f1)
[ -n "$last_show" ] && [ "$last_show" -gt "$last_hide" ] || fail "the cursor is not shown again at the end"
tm kill-server
pass "live block mid-run, resized, and a clean terminal after it"

# Piped: plain lines, no escape codes.
run_flowrun "$WORK/flow.lua" --state "$WORK/st2" --out "$WORK/o2" --progress
expect_rc 0 "piped run"
expect_stderr "task=delta status=ok endpoint=loc"
expect_stderr "tasks=4 status=started"
if grep -q $'\e' "$WORK/stderr"; then fail "escape codes in piped output"; fi
# And without --progress nothing of the block either.
run_flowrun "$WORK/flow.lua" --state "$WORK/st3" --out "$WORK/o3"
expect_rc 0 "piped run without --progress"
if grep -q $'\e' "$WORK/stderr"; then fail "escape codes in piped output"; fi
pass "piped: plain lines, no escape codes"

# Ctrl-C mid-run: exit 130, the block cleared, the cursor shown again.
rm -f "$WORK/rc" "$WORK/raw"
tm -f /dev/null new-session -d -s t -x 100 -y 20 \
  "tmux -S '$SOCK' wait-for go; TERM=xterm-256color '$FLOWRUN' '$WORK/flow.lua' --state '$WORK/st4' --out '$WORK/o4'; echo \"RC=\$?\" >'$WORK/rc'; sleep 600"
tm pipe-pane -t t -o "cat >>'$WORK/raw'"
tm wait-for -S go
wait_for shows_running
tm send-keys -t t C-c
wait_for ended
[ "$(cat "$WORK/rc")" = "RC=130" ] || fail "exit code after Ctrl-C: $(cat "$WORK/rc")"
screen
if grep -Eq 'queue: ' "$WORK/screen"; then fail "block left after Ctrl-C: $(cat "$WORK/screen")"; fi
last_hide=$(grep -obF $'\e[?25l' "$WORK/raw" | tail -1 | cut -d: -f1)
last_show=$(grep -obF $'\e[?25h' "$WORK/raw" | tail -1 | cut -d: -f1)
[ -n "$last_show" ] && [ "$last_show" -gt "$last_hide" ] || fail "the cursor is hidden after Ctrl-C"
pass "Ctrl-C: exit 130, the block cleared, the cursor shown"
