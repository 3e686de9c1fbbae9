#!/usr/bin/env bash
# The savings of an example workflow with local and cloud endpoints,
# reproduced by hand from the report's per-task tokens and the prices in the
# workflow: what each task would have cost on the baseline, the total, the
# saving in percent, and the share of tokens served locally.
source "$(dirname "$0")/lib.bash"
# The committed workflow files only: nothing a run of the source tree left
# beside them (README's rehearsal) may reach this one.
mkdir "$WORK/wf" && cp "$SRC"/workflows/*.lua "$WORK/wf/"
run_flowrun "$WORK/wf/feature-pipeline.lua" --sim --sim-latency 10 --out "$WORK/out" --json
expect_rc 0 "feature-pipeline"
# The baseline endpoint "cloud" costs 0.27 in and 1.10 out per million tokens.
jq -e '
  def near(a; b): ((a - b) | fabs) < 1e-12;
  . as $r
  | ([.tasks[] | (.tokens.input * 0.27 + .tokens.output * 1.10) / 1e6] | add) as $base
  | ([.tasks[] | select(.tier == "cloud") | (.tokens.input * 0.27 + .tokens.output * 1.10) / 1e6] | add // 0) as $spent
  | ([.tasks[] | .tokens.input + .tokens.output] | add) as $all
  | ([.tasks[] | select(.tier == "local") | .tokens.input + .tokens.output] | add // 0) as $local
  | near($r.baseline_cost_usd; $base)
    and near($r.cost_usd; $spent)
    and near($r.savings_pct; 100 * ($base - $spent) / $base)
    and near($r.local_token_share; $local / $all)
    and ([.tasks[] | near(.baseline_cost_usd; (.tokens.input * 0.27 + .tokens.output * 1.10) / 1e6)] | all)
' "$WORK/stdout" >/dev/null || { jq '{baseline_cost_usd, cost_usd, savings_pct, local_token_share}' "$WORK/stdout"; fail "the savings do not add up"; }
[ "$(jqr '[.tasks[] | select(.tier == "local")] | length')" -ge 1 ] || fail "no local task"
[ "$(jqr .baseline)" = cloud ] || fail "baseline"
pass "baseline \$$(jqr .baseline_cost_usd), spent \$$(jqr .cost_usd), saving $(jqr .savings_pct)%, local share $(jqr .local_token_share): all reproduced from per-task tokens"
