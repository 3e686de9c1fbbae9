#!/usr/bin/env bash
# Why a task could not run where it wanted to: the exclusion that matters
# (a context window too small, not "pinned to another endpoint"), and a
# local endpoint that was unreachable while the cloud took its work.
source "$(dirname "$0")/lib.bash"

# ---- the context window ----------------------------------------------------

# 4000 bytes of prompt are about 1000 tokens: with max_tokens 512 they do
# not fit small's context of 1000.
cat >"$WORK/ctx.lua" <<'LUA'
endpoint "small" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m", context = 1000 }
endpoint "big" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m", context = 100000 }
endpoint "cloud" { tier = "cloud", url = "http://127.0.0.1:9/v1", model = "m",
                   api_key_env = "FLOWRUN_TEST_UNSET_KEY" }
agent "a" {}
task "pinned" { agent = "a", endpoint = "small", max_tokens = 512, prompt = string.rep("word ", 800) }
task "fits" { agent = "a", endpoint = "small", max_tokens = 64, prompt = "REPLY: ok" }
LUA
unset FLOWRUN_TEST_UNSET_KEY
run_flowrun "$WORK/ctx.lua" --sim --json --out "$WORK/o1"
expect_rc 1 "a prompt too long for the pinned endpoint"
reason=$(jqr '.tasks[] | select(.name == "pinned") | .reason')
want="no endpoint can take this task: the prompt (~1000 tokens) + max_tokens 512 exceeds small's context of 1000"
[ "$reason" = "$want" ] || fail "context exclusion: '$reason'"
expect_stderr "$want"
if grep -q "pinned to another" "$WORK/stderr"; then fail "the reason still says pinned to another endpoint"; fi
[ "$(jqr '.tasks[] | select(.name == "fits") | .status')" = ok ] || fail "the task that fits did not run"
pass "the context-window exclusion names the prompt tokens, max_tokens, the endpoint and its context"

# Not pinned: every endpoint that could take it says why it cannot (the one
# whose key is missing and the one too small), not the last one evaluated.
cat >"$WORK/ctx2.lua" <<'LUA'
endpoint "small" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m", context = 1000 }
endpoint "tiny" { tier = "local", url = "http://127.0.0.1:9/v1", model = "m", context = 800 }
agent "a" {}
task "long" { agent = "a", max_tokens = 512, prompt = string.rep("word ", 800) }
task "local" { agent = "a", tier = "local", max_tokens = 512, prompt = string.rep("word ", 800) }
LUA
run_flowrun "$WORK/ctx2.lua" --sim --json --out "$WORK/o2"
expect_rc 1 "a prompt too long for every endpoint"
reason=$(jqr '.tasks[] | select(.name == "long") | .reason')
want="no endpoint can take this task: the prompt (~1000 tokens) + max_tokens 512 exceeds small's context of 1000; the prompt (~1000 tokens) + max_tokens 512 exceeds tiny's context of 800"
[ "$reason" = "$want" ] || fail "two context exclusions: '$reason'"
[ "$(jqr '.tasks[] | select(.name == "local") | .reason')" = "$want" ] || fail "tier-pinned: $(jqr '.tasks[1].reason')"
pass "with several endpoints too small, each is named"

# ---- an unreachable local tier ----------------------------------------------

# A local endpoint on a closed loopback port, a cloud one on flowrun-sim:
# the work moves to the cloud and the summary says why.
start_sim
port=$(python3 - 2>/dev/null <<'PY' || echo 9
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
)
cat >"$WORK/tiers.lua" <<LUA
endpoint "gpu" { tier = "local", url = "http://127.0.0.1:$port/v1", model = "m", max_parallel = 2 }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "m", api_key_env = "SIM_TEST_KEY",
                   price = { input = 1, output = 2 } }
agent "a" {}
task "a1" { agent = "a", prompt = "REPLY: one" }
task "a2" { agent = "a", prompt = "REPLY: two" }
task "a3" { agent = "a", deps = { "a1", "a2" }, prompt = "REPLY: three" }
LUA
run_flowrun "$WORK/tiers.lua" --json --out "$WORK/o3" --state "$WORK/state3"
expect_rc 0 "an unreachable local endpoint"
[ "$(jqr '[.tasks[] | .endpoint] | unique | join(",")')" = cloud ] || fail "the work did not move to the cloud"
expect_stderr "local endpoint 'gpu' was unreachable (Failed to connect to 127.0.0.1 port $port"
expect_stderr "; 3 tasks ran on the cloud instead"
pass "the summary names the unreachable local endpoint and the tasks that ran on the cloud instead"

# The README tour's step 4: the local server is down and the cloud refuses
# too. The summary names both, not only the cloud's error.
cat >"$WORK/both.lua" <<LUA
endpoint "gpu" { tier = "local", url = "http://127.0.0.1:$port/v1", model = "m" }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "m", api_key_env = "SIM_TEST_KEY" }
agent "a" {}
task "t" { agent = "a", retries = 0, prompt = "FAULT: 500" }
LUA
run_flowrun "$WORK/both.lua" --out "$WORK/o4" --state "$WORK/state4"
expect_rc 1 "both tiers fail"
expect_stderr "local endpoint 'gpu' was unreachable"
expect_stderr "; 1 task ran on the cloud instead"
expect_stderr "t: every usable endpoint failed; last error: cloud:"
pass "when the cloud fails too, the summary still names the unreachable local endpoint"

# A local endpoint that answers is never called unreachable.
cat >"$WORK/up.lua" <<LUA
endpoint "gpu" { tier = "local", url = "$SIM_URL/v1", model = "m" }
agent "a" {}
task "t" { agent = "a", prompt = "REPLY: fine" }
LUA
run_flowrun "$WORK/up.lua" --out "$WORK/o5" --state "$WORK/state5"
expect_rc 0 "a reachable local endpoint"
if grep -q "unreachable" "$WORK/stderr"; then fail "a reachable endpoint is called unreachable"; fi
pass "a reachable local endpoint is not reported"
