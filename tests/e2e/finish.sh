#!/usr/bin/env bash
# A reply that did not finish as an answer is never passed on as one: cut at
# max_tokens, refused or stopped by a content filter, stopped to call a tool
# nobody offered, or reasoning with no answer, in each protocol, streamed and
# not. Each is a failed attempt with its own outcome (report, decisions,
# ledger); with a second endpoint the task ends ok there and the dependent
# is sent that endpoint's text (the simulator's --record log shows it); with
# allow_truncated = true the cut text is accepted and `finish` is "length".
source "$(dirname "$0")/lib.bash"

PROTOS="openai ollama anthropic"
FAULTS="refusal toolcall thinking"
sim_args=()
for p in $PROTOS; do for s in true false; do for k in $FAULTS; do
  sim_args+=(--model "$k-$p-$s:latency=5,tps=0,faults=$k")
done; done; done
start_sim --latency 5 --tps 0 --record "$WORK/requests.jsonl" "${sim_args[@]}"

PROMPT="Describe the harbour at dawn."
# words MODEL: the words of the simulator's whole reply to PROMPT from MODEL.
words() {
  curl -sf "$SIM_URL/v1/chat/completions" \
    -d "$(jq -nc --arg m "$1" --arg p "$PROMPT" '{model: $m, messages: [{role: "user", content: $p}]}')" |
    jq .usage.completion_tokens
}
# The fallback's reply fits in N words; each "small" model's is longer, so
# max_tokens = N cuts it there and nowhere else.
N=$(words whole)
[ "$N" -lt 40 ] || fail "the simulator's reply from 'whole' has $N words: pick another model"
# long_model PREFIX: the first PREFIX-k whose reply is longer than N words.
long_model() {
  local k
  for k in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    [ "$(words "$1-$k")" -gt "$N" ] && { echo "$1-$k"; return; }
  done
  fail "no model $1-k has a reply longer than $N words"
}

cat >"$WORK/small-first.lua" <<'LUA'
return { route = function(task, candidates, run)
  for _, want in ipairs({ "small", "whole" }) do
    for _, c in ipairs(candidates) do if c.name == want then return c end end
  end
  return candidates[1]
end }
LUA

# write_flow DIR PROTO STREAM MODEL TASK_EXTRA: "cut" may use small (PROTO,
# STREAM, MODEL) or whole; "after" gets its output on the dep endpoint.
write_flow() {
  local dir=$1 proto=$2 stream=$3 model=$4 extra=$5 url=$SIM_URL
  [ "$proto" = openai ] && url="$SIM_URL/v1"
  mkdir -p "$dir"
  cat >"$dir/flow.lua" <<LUA
endpoint "small" { tier = "local", protocol = "$proto", url = "$url", model = "$model",
                   stream = $stream, api_key_env = "SIM_TEST_KEY", max_parallel = 1 }
endpoint "whole" { tier = "local", url = "$SIM_URL/v1", model = "whole", max_parallel = 1 }
endpoint "dep" { tier = "local", url = "$SIM_URL/v1", model = "dep-m", max_parallel = 1 }
agent "a" {}
task "cut" { agent = "a", max_tokens = $N, prompt = "$PROMPT"$extra }
task "after" { agent = "a", deps = { "cut" }, endpoint = "dep", prompt = "REPLY: after {{cut}}" }
LUA
}
task_q() { jqr ".tasks[] | select(.name==\"$1\") | $2"; }
# dep_prompts: what the dependent's endpoint was sent in the last run.
dep_prompts() { jq -r 'select(.body.model == "dep-m") | .body.messages[-1].content' "$WORK/requests.jsonl"; }
new_run() { : >"$WORK/requests.jsonl"; curl -sf -X POST "$SIM_URL/sim/reset" >/dev/null; }
attempt_outcomes() { # attempt_outcomes DIR TASK: the ledger's outcomes, in order
  sqlite3 "$(find "$1" -name state.db | head -1)" \
    "SELECT outcome FROM attempts WHERE task = '$2' ORDER BY id" | tr '\n' ' '
}

# ---- truncation -----------------------------------------------------------
for p in $PROTOS; do for s in true false; do
  model=$(long_model "cut-$p-$s")
  v="$p stream=$s"

  # Only the small endpoint: the task fails as truncated, the dependent is
  # skipped and its endpoint never sees the cut text.
  d="$WORK/trunc-only-$p-$s"
  write_flow "$d" "$p" "$s" "$model" ', endpoint = "small"'
  new_run
  run_flowrun "$d/flow.lua" --state "$d/.flowrun" --out "$d/out" --json
  expect_rc 1 "$v: a cut reply with no other endpoint"
  [ "$(task_q cut .status)" = failed ] || fail "$v: cut is $(task_q cut .status)"
  task_q cut .reason | grep -q "truncated: small: the reply was cut at max_tokens $N" ||
    fail "$v: reason: $(task_q cut .reason)"
  [ "$(task_q cut .finish)" = null ] || fail "$v: finish of a failed task: $(task_q cut .finish)"
  [ "$(task_q cut '.decisions[0].outcome')" = truncated ] || fail "$v: decision outcome"
  [ "$(task_q after .status)" = skipped ] || fail "$v: the dependent ran on cut text"
  [ -z "$(dep_prompts)" ] || fail "$v: the dependent's endpoint was sent: $(dep_prompts)"
  [ ! -e "$d/out/cut.txt" ] || fail "$v: the cut text was written as an output"
  [ "$(attempt_outcomes "$d" cut)" = "truncated " ] || fail "$v: ledger: $(attempt_outcomes "$d" cut)"

  # A second endpoint: the task ends ok there; the dependent gets its text.
  d="$WORK/trunc-fallback-$p-$s"
  write_flow "$d" "$p" "$s" "$model" ''
  new_run
  run_flowrun "$d/flow.lua" --state "$d/.flowrun" --policy "$WORK/small-first.lua" --out "$d/out" --json
  expect_rc 0 "$v: a cut reply with a fallback"
  [ "$(task_q cut .endpoint)" = whole ] || fail "$v: cut ended on $(task_q cut .endpoint)"
  [ "$(task_q cut .finish)" = stop ] || fail "$v: finish $(task_q cut .finish)"
  [ "$(task_q cut '[.decisions[].outcome] | join(",")')" = truncated,ok ] ||
    fail "$v: outcomes $(task_q cut '[.decisions[].outcome] | join(",")')"
  [ "$(task_q cut '.decisions[1].reason')" = truncated ] || fail "$v: the policy's reason"
  whole_text=$(task_q cut .output)
  [ "$(dep_prompts)" = "REPLY: after $whole_text" ] || fail "$v: the dependent was sent: $(dep_prompts)"
  [ "$(attempt_outcomes "$d" cut)" = "truncated ok " ] || fail "$v: ledger: $(attempt_outcomes "$d" cut)"

  # allow_truncated: the cut text is the output, and the dependent gets it.
  d="$WORK/trunc-allowed-$p-$s"
  write_flow "$d" "$p" "$s" "$model" ', endpoint = "small", allow_truncated = true'
  new_run
  run_flowrun "$d/flow.lua" --state "$d/.flowrun" --out "$d/out" --json
  expect_rc 0 "$v: allow_truncated"
  [ "$(task_q cut .finish)" = length ] || fail "$v: finish $(task_q cut .finish)"
  cut_text=$(task_q cut .output)
  [ "$(wc -w <<<"$cut_text")" -eq "$N" ] || fail "$v: the accepted text has $(wc -w <<<"$cut_text") words"
  [ "$(dep_prompts)" = "REPLY: after $cut_text" ] || fail "$v: the dependent was sent: $(dep_prompts)"
done; done
pass "a reply cut at max_tokens fails as truncated in every protocol, streamed and not; never reaches a dependent; a second endpoint takes the task; allow_truncated accepts it"

# ---- refusals, unoffered tool calls, reasoning without an answer ------------
for p in $PROTOS; do for s in true false; do for k in $FAULTS; do
  # Ollama has no refusal stop: a refusal there is only words (docs/testing.md).
  [ "$p/$k" = ollama/refusal ] && continue
  case $k in refusal) want=refused ;; toolcall) want=tool_call ;; thinking) want=no_answer ;; esac
  v="$p stream=$s $k"
  d="$WORK/$k-$p-$s"
  write_flow "$d" "$p" "$s" "$k-$p-$s" ''
  sed -i "s/max_tokens = $N, //" "$d/flow.lua"
  new_run
  run_flowrun "$d/flow.lua" --state "$d/.flowrun" --policy "$WORK/small-first.lua" --out "$d/out" --json
  expect_rc 0 "$v"
  [ "$(task_q cut .endpoint)" = whole ] || fail "$v: cut ended on $(task_q cut .endpoint)"
  [ "$(task_q cut '.decisions[0].outcome')" = "$want" ] ||
    fail "$v: outcome $(task_q cut '.decisions[0].outcome'), expected $want"
  [ "$(task_q cut '.decisions[1].reason')" = "$want" ] || fail "$v: the policy's reason"
  [ "$(task_q cut '.decisions[1].outcome')" = ok ] || fail "$v: the fallback"
  [ "$(dep_prompts)" = "REPLY: after $(task_q cut .output)" ] || fail "$v: the dependent was sent: $(dep_prompts)"
  [ "$(attempt_outcomes "$d" cut)" = "$want ok " ] || fail "$v: ledger: $(attempt_outcomes "$d" cut)"
done; done; done
pass "a refusal, an unoffered tool call and reasoning without an answer each fail their attempt with their own outcome, in each protocol, and fall back"

# A structured task cut at max_tokens says it was cut, not that its JSON is bad.
d="$WORK/schema-cut"
mkdir -p "$d"
cat >"$d/flow.lua" <<LUA
endpoint "small" { tier = "local", url = "$SIM_URL/v1", model = "json-m", max_parallel = 1 }
agent "a" {}
task "plan" { agent = "a", max_tokens = 3, prompt = 'REPLY: {"title": "a b c", "steps": ["x"]}',
              schema = { type = "object", required = { "title", "steps" },
                         properties = { title = { type = "string" },
                                        steps = { type = "array", items = { type = "string" } } } } }
LUA
run_flowrun "$d/flow.lua" --state "$d/.flowrun" --out "$d/out" --json
expect_rc 1 "structured output cut"
jqr '.tasks[0].reason' | grep -q "truncated: small: the reply was cut at max_tokens 3" ||
  fail "structured cut reason: $(jqr '.tasks[0].reason')"
pass "structured output cut at max_tokens fails as truncated"

# allow_truncated does not make cut JSON valid: the schema gate says why.
sed -i 's/max_tokens = 3,/max_tokens = 3, allow_truncated = true,/' "$d/flow.lua"
run_flowrun "$d/flow.lua" --state "$d/.flowrun" --out "$d/out2" --json
expect_rc 1 "structured output cut, allow_truncated"
jqr '.tasks[0].reason' | grep -q "cut at max_tokens 3 and its JSON is incomplete" ||
  fail "allow_truncated structured reason: $(jqr '.tasks[0].reason')"
pass "allow_truncated on a structured task: the cut JSON fails the schema gate, saying it was cut"
