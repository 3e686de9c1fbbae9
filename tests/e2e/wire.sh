#!/usr/bin/env bash
# Wire fidelity: what flowrun sends an OpenAI-compatible endpoint, as the
# simulator records it: a task's seed (and none without one), strict: true
# only for a schema strict mode accepts, the output limit as max_tokens or as
# max_completion_tokens when the endpoint says so; and the 400 an OpenAI
# reasoning model answers to max_tokens names the setting that fixes it.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0 --record "$WORK/requests.jsonl" --model o3-mini:refuse=max_tokens

cat >"$WORK/flow.lua" <<LUA
endpoint "gpu" { tier = "local", url = "$SIM_URL/v1", model = "qwen", max_parallel = 4 }
endpoint "oll" { tier = "local", protocol = "ollama", url = "$SIM_URL", model = "llama" }
endpoint "anth" { tier = "local", protocol = "anthropic", url = "$SIM_URL", model = "claude" }
agent "a" { system = "test agent" }
task "ollama_seeded" { agent = "a", endpoint = "oll", prompt = "REPLY: three", seed = 11 }
task "anthropic_seeded" { agent = "a", endpoint = "anth", prompt = "REPLY: four", seed = 12 }
task "seeded" { agent = "a", endpoint = "gpu", prompt = "REPLY: one", seed = 7, max_tokens = 50 }
task "unseeded" { agent = "a", endpoint = "gpu", prompt = "REPLY: two", max_tokens = 50 }
task "strict" { agent = "a", endpoint = "gpu", prompt = "strict json",
  schema = { type = "object", properties = { name = { type = "string" } }, required = { "name" },
             additionalProperties = false } }
task "optional" { agent = "a", endpoint = "gpu", prompt = "optional json",
  schema = { type = "object", properties = { name = { type = "string" }, note = { type = "string" } },
             required = { "name" }, additionalProperties = false } }
task "nested" { agent = "a", endpoint = "gpu", prompt = "nested json",
  schema = { type = "object", required = { "items" }, additionalProperties = false,
             properties = { items = { type = "array",
               items = { type = "object", properties = { id = { type = "integer" } },
                         required = { "id" } } } } } }
LUA

run_flowrun "$WORK/flow.lua" --out "$WORK/out" --json
expect_rc 0 "run on the local endpoint"

# body PROMPT: the recorded request body whose last message is PROMPT.
body() { jq -c --arg p "$1" 'select(.body.messages[-1].content == $p) | .body' "$WORK/requests.jsonl"; }
[ "$(body 'REPLY: one' | jq -r .seed)" = 7 ] || fail "seed not sent: $(body 'REPLY: one')"
[ "$(body 'REPLY: two' | jq -r 'has("seed")')" = false ] || fail "a seed sent for a task without one"
[ "$(body 'REPLY: three' | jq -r .options.seed)" = 11 ] || fail "Ollama seed: $(body 'REPLY: three')"
[ "$(body 'REPLY: four' | jq -r 'has("seed")')" = false ] || fail "a seed sent to Anthropic: $(body 'REPLY: four')"
pass "a task's seed is sent (Ollama: options.seed), none without one, none to Anthropic"

strict() { body "$1" | jq -r '.response_format.json_schema.strict'; }
[ "$(strict 'strict json')" = true ] || fail "qualifying schema: strict $(strict 'strict json')"
[ "$(strict 'optional json')" = false ] || fail "optional property: strict $(strict 'optional json')"
[ "$(strict 'nested json')" = false ] || fail "array items without additionalProperties: strict $(strict 'nested json')"
pass "strict: true only for a schema strict mode accepts"

[ "$(jq -s '[.[].body | select(has("max_completion_tokens"))] | length' "$WORK/requests.jsonl")" = 0 ] ||
  fail "max_completion_tokens sent by default"
[ "$(body 'REPLY: one' | jq -r .max_tokens)" = 50 ] || fail "max_tokens: $(body 'REPLY: one')"
pass "max_tokens is the default limit field"

# An OpenAI reasoning model: max_tokens is refused with a 400 whose error
# names the endpoint setting; with the setting, the limit goes as
# max_completion_tokens and the task succeeds.
reasoning() {
  cat >"$WORK/o3.lua" <<LUA
endpoint "o3" { tier = "cloud", url = "$SIM_URL/v1", model = "o3-mini", api_key_env = "SIM_TEST_KEY",
                price = { input = 1, output = 4 } $1 }
agent "a" { system = "test agent" }
task "think" { agent = "a", prompt = "REPLY: thought through", max_tokens = 40 }
LUA
}
reasoning ""
run_flowrun "$WORK/o3.lua" --out "$WORK/out3" --json
[ "$RC" -ne 0 ] || fail "a refused max_tokens must fail the task"
[ "$(jqr '.tasks[0].status')" != ok ] || fail "task ok despite the 400"
jqr '.tasks[0].reason' | grep -qF "Unsupported parameter: 'max_tokens'" || fail "report reason: $(jqr '.tasks[0].reason')"
jqr '.tasks[0].reason' | grep -qF 'max_tokens_field = "max_completion_tokens"' ||
  fail "the report's error does not name the setting: $(jqr '.tasks[0].reason')"
expect_stderr 'max_tokens_field = "max_completion_tokens"'
pass "the 400 for max_tokens names max_tokens_field in the report and on stderr"

reasoning ', max_tokens_field = "max_completion_tokens"'
: >"$WORK/requests.jsonl"
run_flowrun "$WORK/o3.lua" --out "$WORK/out3" --json
expect_rc 0 "run with max_tokens_field"
[ "$(cat "$WORK/out3/think.txt")" = "thought through" ] || fail "output: $(cat "$WORK/out3/think.txt")"
[ "$(body 'REPLY: thought through' | jq -r '.max_completion_tokens')" = 40 ] || fail "limit field: $(body 'REPLY: thought through')"
[ "$(body 'REPLY: thought through' | jq -r 'has("max_tokens")')" = false ] || fail "max_tokens still sent"
pass "max_tokens_field = \"max_completion_tokens\" sends that field and the model answers"
