#!/usr/bin/env bash
# Runs that used to hang, crash or report success wrongly: each ends, with
# the exit code a script can rely on. Hangs are bounded by a watchdog
# (timeout), never by sleeping.
source "$(dirname "$0")/lib.bash"
start_sim

cat >"$WORK/eps.lua" <<LUA
endpoint "loc" { tier = "local", url = "$SIM_URL/v1", model = "m-local" }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "m-cloud", api_key_env = "SIM_TEST_KEY",
                   price = { input = 1, output = 1 } }
agent "w" { system = "You write." }
LUA

# local-only keeps every task waiting when the only endpoint is cloud: each
# of them fails with the reason, and the run ends (it used to wait forever
# from the second task on).
cat >"$WORK/cloudonly.lua" <<LUA
workflow { policy = "local-only" }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "m-cloud", api_key_env = "SIM_TEST_KEY",
                   price = { input = 1, output = 1 } }
agent "w" { system = "You write." }
task "a" { agent = "w", prompt = "one" }
task "b" { agent = "w", prompt = "two" }
task "c" { agent = "w", prompt = "three" }
LUA
run_watched 60 "the run never ended with three tasks kept waiting" "$WORK/cloudonly.lua" --json --out "$WORK/o1"
expect_rc 1 "three tasks kept waiting"
[ "$(jqr '[.tasks[] | select(.status=="failed" and (.reason | test("keeps the task waiting")))] | length')" -eq 3 ] ||
  fail "not every waiting task failed with the reason: $(jqr '[.tasks[].reason]')"
pass "every task the policy keeps waiting fails with the reason; the run ends"

# --out "" is a usage error (it overflowed a buffer).
{ cat "$WORK/eps.lua"; echo 'task "a" { agent = "w", prompt = "hi" }'; } >"$WORK/one.lua"
run_flowrun "$WORK/one.lua" --out ""
expect_rc 2 "--out ''"
expect_stderr "--out needs a directory name"
pass "--out '' is a usage error"

# A --json report that cannot be written is exit 74, not 0.
set +e
"$FLOWRUN" "$WORK/one.lua" --json --out "$WORK/o2" >/dev/full 2>"$WORK/stderr"
RC=$?
set -e
expect_rc 74 "--json to a full device"
expect_stderr "cannot write the JSON report"
set +e
"$FLOWRUN" "$WORK/one.lua" --json --out "$WORK/o3" >&- 2>"$WORK/stderr"
RC=$?
set -e
expect_rc 74 "--json with standard output closed"
pass "a JSON report that cannot be written exits 74"

# A stopped local server: every task fails promptly with the reason instead
# of waiting out cooldowns that double at each refused attempt (four tasks
# took six minutes). The watchdog bounds the run; the figures are not timed.
dead_port=$(( (RANDOM % 1000) + 22000 ))
while (exec 3<>/dev/tcp/127.0.0.1/$dead_port) 2>/dev/null; do dead_port=$((dead_port + 1)); done
cat >"$WORK/stopped.lua" <<LUA
endpoint "gpu" { tier = "local", url = "http://127.0.0.1:$dead_port/v1", model = "m" }
agent "w" { system = "You write." }
for i = 1, 4 do task("t" .. i) { agent = "w", prompt = "hello " .. i } end
LUA
run_watched 60 "four tasks on a stopped server did not fail within the watchdog" "$WORK/stopped.lua" --json --out "$WORK/o4"
expect_rc 1 "a stopped local server"
[ "$(jqr '[.tasks[] | select(.status == "failed")] | length')" -eq 4 ] || fail "not every task failed"
jqr '.tasks[].reason' | grep -q "unreachable" || fail "no reason says the endpoint is unreachable: $(jqr '[.tasks[].reason]')"
pass "four tasks on a stopped local server fail with the reason ($(jqr '.endpoints.gpu.requests') requests)"

# A task waiting for a cooling endpoint fails at its own timeout, not after
# the cooldown: the timeout starts when the task is ready, not when sent.
cat >"$WORK/waits.lua" <<LUA
endpoint "gpu" { tier = "local", url = "http://127.0.0.1:$dead_port/v1", model = "m", max_parallel = 1 }
agent "w" { system = "You write." }
task "t1" { agent = "w", prompt = "one", retries = 8, timeout = 3 }
task "t2" { agent = "w", prompt = "two", retries = 8, timeout = 3 }
LUA
run_watched 60 "tasks with a 3 s timeout outlived the watchdog" "$WORK/waits.lua" --json --out "$WORK/o5"
expect_rc 1 "tasks waiting on a cooling endpoint"
[ "$(jqr '[.tasks[] | select(.status == "failed")] | length')" -eq 2 ] || fail "not both tasks failed"
pass "tasks waiting on a cooling endpoint end by their timeout: $(jqr '[.tasks[].reason] | join("; ")' | cut -c1-160)"

# A Retry-After longer than the task's timeout: the retry moves to the
# healthy second endpoint at once instead of waiting the task out.
start_sim2() {
  exec {S2}< <(exec "$FLOWRUN_SIM" --port 0 --latency 10 --tps 0 --model busy:faults=429,retry_after=100000)
  SIM2_PID=$!
  read -r -t 20 -u "$S2" SIM2_URL || fail "second simulator"
}
start_sim2
cat >"$WORK/busy.lua" <<LUA
endpoint "busy" { tier = "local", url = "$SIM2_URL/v1", model = "busy", quality = 0.9 }
endpoint "backup" { tier = "local", url = "$SIM_URL/v1", model = "backup", quality = 0.5 }
agent "w" { system = "You write." }
task "t" { agent = "w", prompt = "REPLY: served", timeout = 20, complexity = 0.9 }
LUA
run_watched 60 "a huge Retry-After kept the task past the watchdog" "$WORK/busy.lua" --json --out "$WORK/o6"
kill "$SIM2_PID" 2>/dev/null || true
expect_rc 0 "Retry-After past the task's timeout with a healthy backup"
[ "$(jqr '.tasks[0].endpoint')" = backup ] || fail "the task did not move to the backup: $(jqr '.tasks[0].endpoint')"
[ "$(jqr '.tasks[0].decisions[0].endpoint')" = busy ] || fail "the task did not try busy first"
[ "$(cat "$WORK/o6/t.txt")" = served ] || fail "the backup's output"
pass "a Retry-After past the task's timeout moves the retry to the healthy endpoint"
