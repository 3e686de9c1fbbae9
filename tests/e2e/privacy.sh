#!/usr/bin/env bash
# Privacy follows the data: a task that receives a private task's output is
# private too, transitively, so no private output, nor text a dependent
# derived from it, reaches a cloud endpoint, whatever the policy prefers.
# A real flowrun-sim records every request body; the cloud endpoint has its
# own model name, so the record says exactly what the cloud was sent.
source "$(dirname "$0")/lib.bash"
REC="$WORK/record.jsonl"
start_sim --latency 5 --tps 0 --record "$REC"

# The cloud is free and far stronger, and every task is complex: balanced
# sends every task it may to the cloud.
cat >"$WORK/endpoints.lua" <<LUA
endpoint "local" { tier = "local", url = "$SIM_URL/v1", model = "local-m", max_parallel = 4,
                   quality = 0.3 }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "cloud-m", max_parallel = 4,
                   quality = 0.99, price = { input = 0, output = 0 } }
LUA

# Three levels: secret -> mid -> leaf, with fan-in from public tasks at
# each level; mid copies the secret through a placeholder, leaf derives
# from mid (lower case) through a prompt function.
cat >"$WORK/flow.lua" <<'LUA'
workflow { name = "privacy" }
agent "a" { system = "test agent" }
task "pub1" { agent = "a", complexity = 0.95, prompt = "REPLY: PUBONE" }
task "pub2" { agent = "a", complexity = 0.95, prompt = "REPLY: PUBTWO" }
task "secret" { agent = "a", private = true, complexity = 0.95, prompt = "REPLY: SECRETALPHA" }
task "mid" { agent = "a", deps = { "secret", "pub1" }, complexity = 0.95,
             prompt = "REPLY: MIDBETA {{secret}} {{pub1}}" }
task "leaf" {
  agent = "a", deps = { "mid", "pub2" }, complexity = 0.95,
  prompt = function(ctx) return "REPLY: LEAFGAMMA " .. string.lower(ctx.mid.text) .. " " .. ctx.pub2.text end,
}
task "pubchild" { agent = "a", deps = { "pub1", "pub2" }, complexity = 0.95,
                  prompt = "REPLY: PUBCHILD {{pub1}} {{pub2}}" }
LUA

run_flowrun "$WORK/flow.lua" --endpoints "$WORK/endpoints.lua" --out "$WORK/out" --json --explain
expect_rc 0 "privacy run"
[ "$(jqr '.tasks[] | select(.name=="leaf") | .output')" = "LEAFGAMMA midbeta secretalpha pubone PUBTWO" ] ||
  fail "leaf output: $(jqr '.tasks[] | select(.name=="leaf") | .output')"

# cloud_bodies: the request bodies the cloud model received, one a line.
cloud_bodies() { jq -c 'select(.body.model == "cloud-m") | .body' "$REC"; }
local_bodies() { jq -c 'select(.body.model == "local-m") | .body' "$REC"; }
if cloud_bodies | grep -qi -e SECRETALPHA -e MIDBETA -e LEAFGAMMA; then
  fail "private output or text derived from it reached the cloud: $(cloud_bodies | grep -i -e SECRETALPHA -e MIDBETA -e LEAFGAMMA | cut -c1-300)"
fi
[ "$(cloud_bodies | wc -l)" -eq 3 ] || fail "cloud requests: $(cloud_bodies | wc -l), expected 3 (pub1, pub2, pubchild)"
[ "$(local_bodies | wc -l)" -eq 3 ] || fail "local requests: $(local_bodies | wc -l), expected 3"
local_bodies | grep -q 'LEAFGAMMA midbeta secretalpha' || fail "leaf's request did not carry the derived text locally"
pass "no private output, nor text derived from it, reaches any cloud request"

for t in secret mid leaf; do
  [ "$(jqr ".tasks[] | select(.name==\"$t\") | .tier")" = local ] || fail "$t ran on $(jqr ".tasks[] | select(.name==\"$t\") | .tier")"
  [ "$(jqr ".tasks[] | select(.name==\"$t\") | .private")" = true ] || fail "$t is not reported private"
done
for t in pub1 pub2 pubchild; do
  [ "$(jqr ".tasks[] | select(.name==\"$t\") | .tier")" = cloud ] || fail "$t should have gone to the cloud"
  [ "$(jqr ".tasks[] | select(.name==\"$t\") | .private")" = false ] || fail "$t is reported private"
done
pass "inherited tasks ran local; their public siblings still went to the cloud"

[ "$(jqr '.tasks[] | select(.name=="secret") | .private_from')" = null ] || fail "secret private_from"
[ "$(jqr '.tasks[] | select(.name=="mid") | .private_from')" = secret ] || fail "mid private_from: $(jqr '.tasks[] | select(.name=="mid") | .private_from')"
[ "$(jqr '.tasks[] | select(.name=="leaf") | .private_from')" = secret ] || fail "leaf private_from"
[ "$(jqr '.tasks[] | select(.name=="pub1") | .private_from')" = null ] || fail "pub1 private_from"
expect_stderr "mid: private: inherited from 'secret'"
expect_stderr "leaf: private: inherited from 'secret' via 'mid'"
grep -F "explain: leaf -> local" "$WORK/stderr" | grep -qF "private: inherited from 'secret'" ||
  fail "--explain does not say where leaf's privacy came from"
pass "the report, the summary and --explain say where privacy came from"

# declassify = true lets a dependent go to the cloud; a private agent makes
# its tasks private (and their dependents).
: >"$REC"
cat >"$WORK/declassify.lua" <<'LUA'
workflow { name = "declassify" }
agent "a" { system = "test agent" }
agent "vault" { system = "vault agent", private = true }
task "secret" { agent = "a", private = true, complexity = 0.95, prompt = "REPLY: SECRETALPHA" }
task "summary" { agent = "a", deps = { "secret" }, declassify = true, complexity = 0.95,
                 prompt = "REPLY: PUBLICSUMMARY" }
task "vaulted" { agent = "vault", complexity = 0.95, prompt = "REPLY: VAULTDELTA" }
task "vchild" { agent = "a", deps = { "vaulted" }, complexity = 0.95,
                prompt = "REPLY: VCHILD {{vaulted}}" }
LUA
run_flowrun "$WORK/declassify.lua" --endpoints "$WORK/endpoints.lua" --out "$WORK/out2" --json
expect_rc 0 "declassify run"
[ "$(jqr '.tasks[] | select(.name=="summary") | .tier')" = cloud ] || fail "declassified summary did not go to the cloud"
[ "$(jqr '.tasks[] | select(.name=="summary") | .private')" = false ] || fail "summary reported private"
[ "$(jqr '.tasks[] | select(.name=="summary") | .declassified_from')" = secret ] || fail "summary declassified_from"
[ "$(cloud_bodies | wc -l)" -eq 1 ] || fail "cloud requests: $(cloud_bodies | wc -l), expected 1 (summary)"
cloud_bodies | grep -q PUBLICSUMMARY || fail "the cloud request is not the summary's"
pass "declassify = true lets a dependent of a private task go to the cloud"

[ "$(jqr '.tasks[] | select(.name=="vaulted") | .tier')" = local ] || fail "a private agent's task left the local tier"
[ "$(jqr '.tasks[] | select(.name=="vaulted") | .private')" = true ] || fail "vaulted not private"
[ "$(jqr '.tasks[] | select(.name=="vchild") | .tier')" = local ] || fail "vchild left the local tier"
[ "$(jqr '.tasks[] | select(.name=="vchild") | .private_from')" = vaulted ] || fail "vchild private_from"
if cloud_bodies | grep -q -e VAULTDELTA -e SECRETALPHA; then fail "private agent output reached the cloud"; fi
pass "a private agent makes its tasks private, and their dependents"

# A dependent pinned to the cloud cannot inherit privacy: a load-time error
# naming both tasks, before any request.
: >"$REC"
cat >"$WORK/pinned.lua" <<'LUA'
agent "a" { system = "test agent" }
task "secret" { agent = "a", private = true, prompt = "REPLY: SECRETALPHA" }
task "mid" { agent = "a", deps = { "secret" }, prompt = "REPLY: {{secret}}" }
task "after" { agent = "a", deps = { "mid" }, endpoint = "cloud", prompt = "REPLY: {{mid}}" }
LUA
run_flowrun "$WORK/pinned.lua" --endpoints "$WORK/endpoints.lua" --out "$WORK/out3"
expect_rc 65 "cloud-pinned dependent of a private task"
expect_stderr "pinned.lua:4:"
expect_stderr "task 'after'"
expect_stderr "private task 'secret'"
expect_stderr "declassify"
sed -i 's/endpoint = "cloud"/tier = "cloud"/' "$WORK/pinned.lua"
run_flowrun "$WORK/pinned.lua" --endpoints "$WORK/endpoints.lua" --out "$WORK/out3"
expect_rc 65 "tier-cloud dependent of a private task"
expect_stderr "pinned.lua:4:"
expect_stderr "private task 'secret'"
[ ! -s "$REC" ] || fail "a request was sent for an invalid workflow"
pass "a cloud-pinned dependent of a private task is exit 65 naming both tasks"
