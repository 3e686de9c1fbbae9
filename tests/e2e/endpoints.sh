#!/usr/bin/env bash
# `flowrun endpoints [--check] [--probe]` against flowrun-sim started with
# --key (the sentinel key: requests without it get a 401): one endpoint
# down (a closed port), one with a wrong key, one whose model the server
# does not list, one whose key variable is unset, and fine ones (OpenAI,
# Anthropic, Ollama): each reported as it is, exit 1; the fine ones alone
# exit 0; --probe sends one request per endpoint and --check none; no key's
# value is ever printed (lib.bash's leak check for the sentinel, a grep for
# the wrong key); the listing merges the workflow's endpoints with the file's.
source "$(dirname "$0")/lib.bash"
start_sim --model m1 --model m2 --model qwen2.5:7b --key "$FLOWRUN_SENTINEL_KEY"
WRONG=sk-wrong-value-must-not-show-7d1e
export WRONG_KEY=$WRONG
unset NOT_SET_KEY
closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >fine.lua <<EOT
endpoint "oai" { tier = "cloud", protocol = "openai", url = "$SIM_URL/v1", model = "m1",
                 api_key_env = "OPENAI_API_KEY", price = { input = 0.5, output = 1.5 },
                 context = 32000, max_parallel = 3 }
endpoint "claude" { tier = "cloud", protocol = "anthropic", url = "$SIM_URL", model = "m2",
                    api_key_env = "ANTHROPIC_API_KEY" }
endpoint "llama" { tier = "local", protocol = "ollama", url = "$SIM_URL", model = "qwen2.5:7b",
                   api_key_env = "FLOWRUN_SENTINEL_KEY" }
EOT
cat >broken.lua <<EOT
endpoint "down" { tier = "local", protocol = "ollama", url = "http://127.0.0.1:$closed", model = "m1" }
endpoint "wrongkey" { tier = "cloud", protocol = "openai", url = "$SIM_URL/v1", model = "m1",
                      api_key_env = "WRONG_KEY" }
endpoint "nomodel" { tier = "cloud", protocol = "openai", url = "$SIM_URL/v1", model = "gpt-none",
                     api_key_env = "OPENAI_API_KEY" }
endpoint "nokey" { tier = "cloud", protocol = "anthropic", url = "$SIM_URL", model = "m2",
                   api_key_env = "NOT_SET_KEY" }
EOT
no_wrong_key() { ! grep -qF -- "$WRONG" "$WORK/stdout" "$WORK/stderr" || fail "$1: the wrong key's value is printed"; }
chats() { curl -sf "$SIM_URL/sim/stats" | jq '[.models[].requests] | add // 0'; }

# The listing: no request, every field, the key's variable and whether it is set.
run_flowrun endpoints --endpoints fine.lua --endpoints broken.lua --json
expect_rc 0 "flowrun endpoints (listing)"
[ "$(jqr 'length')" = 7 ] || fail "listing: expected 7 endpoints"
[ "$(jqr '.[] | select(.name == "oai") | [.tier, .protocol, .model, .max_parallel, .context, .price.input, .price.output, .key_env, .key] | map(tostring) | join(" ")')" = \
  "cloud openai m1 3 32000 0.5 1.5 OPENAI_API_KEY set" ] || fail "listing: oai's fields"
[ "$(jqr '.[] | select(.name == "nokey") | .key')" = missing ] || fail "listing: nokey's key is not missing"
[ "$(jqr '.[] | select(.name == "down") | .key_env')" = null ] || fail "listing: down has a key variable"
jq -e 'all(.[]; has("check") | not)' "$WORK/stdout" >/dev/null || fail "listing: checks without --check"
[ "$(chats)" = 0 ] || fail "listing sent chat requests"
no_wrong_key "listing"
pass "flowrun endpoints lists tier, protocol, model, capacity, price, context and key variables"

# --check: each problem reported as it is, exit 1, no chat request sent.
run_watched 30 "flowrun endpoints --check" endpoints --endpoints fine.lua --endpoints broken.lua --check --json --timeout 5
expect_rc 1 "--check with unusable endpoints"
chk() { jqr ".[] | select(.name == \"$1\") | .check | $2"; }
for ok in oai claude llama; do
  [ "$(chk $ok .usable)" = true ] || fail "--check: $ok is not usable: $(chk $ok .problems)"
  [ "$(chk $ok .model_present)" = true ] || fail "--check: $ok's model not found"
  [ "$(chk $ok .key)" = set ] || fail "--check: $ok's key is not 'set'"
done
[ "$(chk llama .loaded)" = true ] || fail "--check: llama's model is not in /api/ps"
[ "$(chk down .reachable)" = false ] || fail "--check: down is reachable"
chk down '.problems[0]' | grep -q '^unreachable: ' || fail "--check: down's problem"
[ "$(chk wrongkey .key)" = rejected ] || fail "--check: wrongkey's key is not rejected"
[ "$(chk wrongkey .reachable)" = true ] || fail "--check: wrongkey is not reachable"
chk wrongkey '.problems[0]' | grep -qF 'refused the key in WRONG_KEY' || fail "--check: wrongkey's problem"
[ "$(chk nomodel .model_present)" = false ] || fail "--check: nomodel's model is listed"
chk nomodel '.problems[0]' | grep -qF "does not list the model 'gpt-none'" || fail "--check: nomodel's problem"
[ "$(chk nomodel .key)" = set ] || fail "--check: nomodel's key"
[ "$(chk nokey .key)" = missing ] || fail "--check: nokey's key is not missing"
chk nokey '.problems[0]' | grep -qF 'NOT_SET_KEY is not set' || fail "--check: nokey's problem"
for bad in down wrongkey nomodel nokey; do
  [ "$(chk $bad .usable)" = false ] || fail "--check: $bad is usable"
done
jq -e 'all(.[]; .check | has("ttft_ms") | not)' "$WORK/stdout" >/dev/null || fail "--check probed"
[ "$(chats)" = 0 ] || fail "--check sent chat requests"
no_wrong_key "--check"
pass "--check: down unreachable, a wrong key rejected, a missing model, an unset key; the rest usable; exit 1"

# The table on a terminal or not: the same findings, one line each.
run_watched 30 "flowrun endpoints --check (table)" endpoints --endpoints fine.lua --endpoints broken.lua --check
expect_rc 1 "--check table"
grep -E '^oai +cloud +openai +m1 ' "$WORK/stdout" | grep -qE ' OPENAI_API_KEY set +ok +listed ' ||
  { cat "$WORK/stdout" >&2; fail "table: oai's row"; }
grep -E '^wrongkey ' "$WORK/stdout" | grep -qE 'WRONG_KEY rejected +UNUSABLE' || fail "table: wrongkey's row"
grep -E '^nomodel ' "$WORK/stdout" | grep -qE 'UNUSABLE +MISSING' || fail "table: nomodel's row"
grep -qE '^  down: unreachable: ' "$WORK/stdout" || fail "table: down's problem line"
no_wrong_key "the table"
pass "the table shows each endpoint's status and its problems"

# All fine: exit 0; --probe sends one one-token request to each.
run_watched 30 "flowrun endpoints --probe" endpoints --endpoints fine.lua --probe --json
expect_rc 0 "--probe with every endpoint fine"
jq -e 'all(.[]; .check.usable and (.check.ttft_ms | type) == "number" and .check.ttft_ms >= 0)' \
  "$WORK/stdout" >/dev/null || { cat "$WORK/stdout" >&2; fail "--probe: a time to first token is missing"; }
[ "$(chats)" = 3 ] || fail "--probe: expected 3 chat requests, the sim counted $(chats)"
curl -sf "$SIM_URL/sim/stats" | jq -e '.models.m1.output_tokens <= 1' >/dev/null ||
  fail "--probe asked for more than one token"
pass "--probe: every endpoint usable, a time to first token each, one request each, exit 0"

# A refused probe (a wrong key) is an unusable endpoint too.
run_watched 30 "flowrun endpoints --probe (wrong key)" endpoints --endpoints broken.lua --probe --json
expect_rc 1 "--probe with broken endpoints"
[ "$(chk wrongkey .key)" = rejected ] || fail "--probe: wrongkey is not rejected"
no_wrong_key "--probe"
pass "--probe with broken endpoints exits 1"

# A workflow's own endpoints merged with the file's, as a run merges them:
# the file's replaces an inline one of the same name.
cat >wf.lua <<EOT
endpoint "inline" { tier = "local", protocol = "ollama", url = "$SIM_URL", model = "m1",
                    api_key_env = "FLOWRUN_SENTINEL_KEY" }
endpoint "oai" { tier = "local", protocol = "ollama", url = "$SIM_URL", model = "replaced" }
agent "a" {}
task "t" { agent = "a", prompt = "x" }
EOT
cp fine.lua endpoints.lua
run_watched 30 "flowrun endpoints WORKFLOW --check" endpoints wf.lua --check --json
[ "$RC" = 0 ] || cat "$WORK/stdout" >&2
expect_rc 0 "flowrun endpoints wf.lua --check"
[ "$(jqr 'map(.name) | join(",")')" = "inline,oai,claude,llama" ] || fail "merge: $(jqr 'map(.name) | join(",")')"
[ "$(jqr '.[] | select(.name == "oai") | .model')" = m1 ] || fail "merge: the file's oai does not replace the inline one"
pass "a workflow's endpoints merged with ./endpoints.lua, the file's replacing the inline one"

# A URL is shown without its query (the loader refuses credentials in one);
# no endpoints file at all is a configuration error.
cat >creds.lua <<EOT
endpoint "creds" { tier = "cloud", protocol = "openai", url = "https://api.example.com/v1?tenant=t1secret",
                   model = "m" }
EOT
run_flowrun endpoints --endpoints creds.lua
expect_rc 0 "listing creds.lua"
grep -qF 'https://api.example.com/v1 ' "$WORK/stdout" || { cat "$WORK/stdout" >&2; fail "the URL is not shown without its query"; }
! grep -qF 't1secret' "$WORK/stdout" || fail "a URL's query is printed"
rm endpoints.lua
run_flowrun endpoints
expect_rc 78 "no endpoints file"
expect_stderr "no endpoints file"
run_flowrun endpoints --bogus
expect_rc 2 "an unknown option"
pass "URLs without their query; no endpoints file exits 78, a bad option 2"

# Concurrently, each bounded by --timeout: a server that accepts and never
# answers sees the three checks' connections open at once (one after the
# other, it would never see more than one), and each ends as unreachable.
cat >hold.py <<'EOT'
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(16); srv.settimeout(60)  # ends on its own if left behind
print(srv.getsockname()[1], flush=True)
state = {"open": 0, "peak": 0}; lock = threading.Lock()
def hold(conn):
    with lock:
        state["open"] += 1; state["peak"] = max(state["peak"], state["open"])
        open(sys.argv[1], "w").write(str(state["peak"]))
    while conn.recv(65536):
        pass
    with lock:
        state["open"] -= 1
while True:
    c, _ = srv.accept()
    threading.Thread(target=hold, args=(c,), daemon=True).start()
EOT
exec {HOLD_FD}< <(exec python3 hold.py "$WORK/peak")
HOLD_PID=$!
read -r -t 10 -u "$HOLD_FD" hold_port || fail "the holding server did not start"
for n in 1 2 3; do
  echo "endpoint \"mute$n\" { tier = \"local\", protocol = \"openai\", url = \"http://127.0.0.1:$hold_port/v1\", model = \"m\" }"
done >mute.lua
run_watched 30 "flowrun endpoints --check (a mute server)" endpoints --endpoints mute.lua --check --json --timeout 2
kill "$HOLD_PID" 2>/dev/null || true
expect_rc 1 "--check against a server that never answers"
[ "$(cat "$WORK/peak")" = 3 ] || fail "the checks were not at once: at most $(cat "$WORK/peak") connection(s) open"
jq -e 'all(.[]; .check.reachable == false and (.check.problems[0] | startswith("unreachable: ")))' \
  "$WORK/stdout" >/dev/null || { cat "$WORK/stdout" >&2; fail "a mute endpoint is not reported unreachable"; }
pass "the checks run at once (3 connections open together), each ends at --timeout as unreachable"
