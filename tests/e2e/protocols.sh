#!/usr/bin/env bash
# The same workflow run against each protocol of flowrun-sim, streamed and
# not, gives the same outputs, the same token counts and the same cost; the
# spend in the report equals the simulator's own usage counts x prices.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0

run_variant() { # run_variant PROTOCOL STREAM
  local proto=$1 stream=$2 url=$SIM_URL
  [ "$proto" = openai ] && url="$SIM_URL/v1"
  local dir="$WORK/$proto-$stream"
  mkdir -p "$dir"
  cat >"$dir/flow.lua" <<LUA
workflow { name = "protocols", vars = { topic = "event loops" } }
endpoint "cloud" { tier = "cloud", protocol = "$proto", url = "$url", model = "same-model",
                   stream = $stream, max_parallel = 2, api_key_env = "SIM_TEST_KEY",
                   price = { input = 3.0, output = 15.0 } }
agent "writer" { system = "You are a careful technical writer." }
task "gen" { agent = "writer", prompt = "Write about {{var.topic}}." }
task "plan" {
  agent = "writer", prompt = "Plan an article about {{var.topic}}.",
  schema = { type = "object", required = { "title", "sections" },
             properties = { title = { type = "string", minLength = 3 },
                            sections = { type = "array", minItems = 2, maxItems = 3,
                                         items = { type = "string" } },
                            level = { type = "string", enum = { "intro", "deep" } } } },
}
task "use" { agent = "writer", deps = { "gen", "plan" },
             prompt = "Continue this, titled {{plan.json.title}}:\n{{gen}}" }
task "echo" { agent = "writer", deps = { "use", "plan" },
              prompt = "REPLY: {{plan.json.title}} / {{plan.json.sections.1}} / {{plan.json.level}}" }
LUA
  curl -sf -X POST "$SIM_URL/sim/reset" >/dev/null
  # Its own state: the variants share a cache key (the protocol is part of it, streaming is not).
  run_flowrun "$dir/flow.lua" --out "$dir/out" --state "$dir/state" --json # SIM_TEST_KEY: the sentinel (lib.bash)
  expect_rc 0 "$proto stream=$stream"
  cp "$WORK/stdout" "$dir/report.json"
  sim_stats >"$dir/stats.json"
  # What flowrun booked against what the simulator says it served.
  jq -r '.tasks[] | "\(.name) \(.tokens.input) \(.tokens.output) \(.cost_usd) \(.usage_estimated)"' \
    "$dir/report.json" >"$dir/tokens"
  local sim_in sim_out fr_in fr_out
  sim_in=$(jq '.models."same-model".input_tokens' "$dir/stats.json")
  sim_out=$(jq '.models."same-model".output_tokens' "$dir/stats.json")
  fr_in=$(jq '[.tasks[].tokens.input] | add' "$dir/report.json")
  fr_out=$(jq '[.tasks[].tokens.output] | add' "$dir/report.json")
  [ "$sim_in" = "$fr_in" ] && [ "$sim_out" = "$fr_out" ] ||
    fail "$proto stream=$stream: flowrun booked $fr_in/$fr_out tokens, the simulator served $sim_in/$sim_out"
  # Spend to the cent (and below): the simulator's counts x the prices.
  awk -v i="$sim_in" -v o="$sim_out" -v c="$(jq .cost_usd "$dir/report.json")" \
    'BEGIN { want = (i * 3.0 + o * 15.0) / 1e6; d = want - c; if (d < 0) d = -d; exit !(d < 1e-9) }' ||
    fail "$proto stream=$stream: cost $(jq .cost_usd "$dir/report.json") is not the simulator's usage x price"
  grep -q true "$dir/tokens" && fail "$proto stream=$stream: usage was estimated"
  pass "$proto stream=$stream: exit 0, tokens and spend match the simulator's own counts"
}

for proto in openai ollama anthropic; do
  for stream in true false; do run_variant "$proto" "$stream"; done
done

ref="$WORK/openai-true"
for v in openai-false ollama-true ollama-false anthropic-true anthropic-false; do
  for f in gen.txt plan.json use.txt echo.txt; do
    cmp -s "$ref/out/$f" "$WORK/$v/out/$f" || fail "$v: $f differs from openai-true"
  done
  cmp -s "$ref/tokens" "$WORK/$v/tokens" || { diff "$ref/tokens" "$WORK/$v/tokens"; fail "$v: tokens or cost differ"; }
done
pass "every protocol, streamed or not, gives the same outputs, tokens and cost"

# The structured output reached the dependents field by field.
want=$(jq -r '"\(.title) / \(.sections[1]) / \(.level)"' "$ref/out/plan.json")
[ "$(cat "$ref/out/echo.txt")" = "$want" ] || fail "echo: '$(cat "$ref/out/echo.txt")', want '$want'"
pass "dependents read the structured output's fields"
