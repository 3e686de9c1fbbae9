#!/usr/bin/env bash
# The learning benchmark, not part of the test suite: does `adaptive` learn,
# run after run on one state store, which cheap endpoints pass which tasks?
#
# A coding pipeline (tests/bench/learn.py: FEATURES features x design,
# implement, test, review, document), four local simulated models of rising
# skill at price 0 and two cloud models of high skill with prices, all
# served by one flowrun-sim whose models pass or fail by each task's hidden
# difficulty (skill=, @@difficulty). The workflow sees a complexity hint off
# by up to +-0.15; its `check` gate passes only PASS replies, so a reply too
# weak for its task is a quality failure and the task escalates.
#
# RUNS consecutive runs of fresh tasks of the same kind (run k draws the same
# tasks for every policy) with, each on a state store of its own kept across
# its runs: adaptive, cost, balanced, an all-cloud baseline (every task
# pinned to the strongest cloud model) and an oracle (every task pinned to
# the cheapest endpoint whose skill covers its difficulty). Prints per run
# and policy the spend, the escalations (decisions after a quality failure),
# the local token share and the makespan, then adaptive's spend over the
# oracle's and its makespan over balanced's, and checks the targets of the
# last run: adaptive's spend <= 1.5 x the oracle's, makespan <= 1.2 x
# balanced's, every task of every run passing its gate (exit 1 if not).
#
#   cmake --build build && bash tests/bench/learn.sh [build dir]
#   RUNS=5 FEATURES=20 LOCAL_MS=200 CLOUD_MS=400 bash tests/bench/learn.sh
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(realpath "${1:-$SRC/build}")
RUNS=${RUNS:-5}
FEATURES=${FEATURES:-20}
LOCAL_MS=${LOCAL_MS:-200}
CLOUD_MS=${CLOUD_MS:-400}
POLICIES=${POLICIES:-"adaptive cost balanced cloud oracle"}
export FLOWRUN_LUA_DIR="$SRC/lua" # the policies as they are in the tree
WORK=$(mktemp -d)
SIM_PID=""
# KEEP=DIR keeps the workflows, reports and state stores there.
trap '[ -z "$SIM_PID" ] || kill "$SIM_PID"; [ -z "${KEEP:-}" ] || cp -r "$WORK" "$KEEP"; rm -rf "$WORK"' EXIT

models=()
while read -r m; do
  case "$m" in
    mid:* | top:*) models+=(--model "$m,latency=$CLOUD_MS") ;;
    *) models+=(--model "$m,latency=$LOCAL_MS") ;;
  esac
done < <(python3 "$SRC/tests/bench/learn.py" --models)
exec {fd}< <(exec "$BUILD/flowrun-sim" --port 0 --tps 400 "${models[@]}")
SIM_PID=$!
read -r -t 20 -u "$fd" url

# --seed makes adaptive's exploration the same on every run of the benchmark
# (without it the seed comes from the run id).
seed=()
"$BUILD/flowrun" help run 2>&1 | grep -q -- '--seed' && seed=(--seed 1)

echo "policy run status spend_usd escalations local_share makespan_ms" >"$WORK/rows"
for policy in $POLICIES; do
  mode=free route=$policy
  case "$policy" in
    oracle) mode=oracle route=cost ;;
    cloud) mode=cloud route=cost ;;
  esac
  for k in $(seq 1 "$RUNS"); do
    wf="$WORK/$policy-$k.lua"
    python3 "$SRC/tests/bench/learn.py" --url "$url" --run "$k" --features "$FEATURES" \
      --mode "$mode" --policy "$route" >"$wf"
    rc=0
    "$BUILD/flowrun" "$wf" --state "$WORK/state-$policy" --json -q --out "$WORK/out" \
      "${seed[@]}" >"$WORK/$policy-$k.json" || rc=$?
    jq -r --arg p "$policy" --arg k "$k" --arg rc "$rc" '
      [$p, $k,
       (if .status == "ok" and $rc == "0" then "ok"
        else "\([.tasks[] | select(.status != "ok")] | length)-failed" end),
       (.cost_usd * 1e6 | round / 1e6),
       ([.tasks[].decisions[] | select(.reason == "quality")] | length),
       (.local_token_share * 1000 | round / 1000),
       (.makespan_ms | round)] | @tsv' "$WORK/$policy-$k.json" | tr '\t' ' ' >>"$WORK/rows"
  done
done
column -t "$WORK/rows"
echo
awk -v runs="$RUNS" '
  function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
  function sa(v, p,   k, t) { for (k = 1; k <= runs; k++) t += v[p, k]; return t }
  NR > 1 { spend[$1, $2] = $4; ms[$1, $2] = $7; if ($3 != "ok") bad++ }
  END {
    printf "%-4s %-18s %-18s %-18s\n", "run", "adaptive/oracle", "adaptive/cost", "makespan/balanced"
    for (k = 1; k <= runs; k++)
      printf "%-4d %-18s %-18s %-18s\n", k,
        ratio(spend["adaptive", k], spend["oracle", k]), ratio(spend["adaptive", k], spend["cost", k]),
        ratio(ms["adaptive", k], ms["balanced", k])
    for (k = 1; k <= runs; k++) { ma += ms["adaptive", k]; mb += ms["balanced", k] }
    printf "all  %-18s %-18s %-18s (sums over the runs)\n", ratio(sa(spend, "adaptive"), sa(spend, "oracle")),
      ratio(sa(spend, "adaptive"), sa(spend, "cost")), ratio(ma, mb)
    r = ratio(spend["adaptive", runs], spend["oracle", runs]) + 0
    m = ratio(ms["adaptive", runs], ms["balanced", runs]) + 0
    printf "\nrun %d: adaptive spends %.2f x the oracle (target <= 1.5: %s), ", runs, r,
      (r <= 1.5 ? "met" : "MISSED")
    printf "makespan %.2f x balanced (target <= 1.2: %s), ", m, (m <= 1.2 ? "met" : "MISSED")
    printf "%s\n", (bad ? bad " runs with a task that failed its gate" : "every task passed its gate")
    exit bad ? 1 : 0
  }' "$WORK/rows"
