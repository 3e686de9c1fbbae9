#!/usr/bin/env bash
# One rule for where a run keeps things (docs/cli.md): the current directory
# is the project directory. State goes to ./.flowrun/ (state.db, sim.db for
# rehearsals) unless --state DIR or $FLOWRUN_STATE, outputs to
# ./.flowrun/out/<run>/ unless --out DIR, wherever the workflow file is;
# `save` paths stay relative to the workflow's folder. `flowrun spend` uses
# the same rule, finds the ledger the runs wrote, and never creates a file.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0

mkdir -p "$WORK/proj/flows"
cat >"$WORK/proj/flows/paid.lua" <<LUA
workflow { name = "paid" }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "c", max_parallel = 2,
                   price = { input = 1, output = 2 } }
agent "a" {}
task "one" { agent = "a", prompt = "Say something." }
task "two" { agent = "a", deps = { "one" }, prompt = "Answer: {{one}}", save = "out/two.md" }
LUA
# listing DIR: every path under DIR, sorted (what a command may have created).
listing() { (cd "$1" && find . | sort); }

# A run from the project folder, the workflow in a subfolder.
cd "$WORK/proj"
run_flowrun flows/paid.lua --json
expect_rc 0 "run from the project folder"
run=$(jqr .run)
cost=$(jqr .cost_usd)
[ -f .flowrun/state.db ] || fail "no ledger in ./.flowrun/state.db: $(listing .)"
[ -s ".flowrun/out/$run/one.txt" ] && [ -s ".flowrun/out/$run/two.txt" ] ||
  fail "outputs not in ./.flowrun/out/$run/: $(listing .)"
[ "$(jqr .out_dir)" = ".flowrun/out/$run" ] || fail "report out_dir: $(jqr .out_dir)"
[ -s flows/out/two.md ] || fail "save path not relative to the workflow's folder"
[ ! -e flows/.flowrun ] || fail "the run left state beside the workflow: $(listing flows)"
pass "state in ./.flowrun/state.db, outputs in ./.flowrun/out/$run/, save beside the workflow, nothing in flows/.flowrun"

# A rehearsal: its own ledger in the same folder.
run_flowrun flows/paid.lua --sim --sim-latency 5 --json
expect_rc 0 "rehearsal"
[ -f .flowrun/sim.db ] || fail "no ./.flowrun/sim.db"
[ ! -e flows/.flowrun ] || fail "the rehearsal left state beside the workflow"
pass "a rehearsal's ledger is ./.flowrun/sim.db"

# spend from the project folder finds the ledger the run wrote, and changes
# nothing in it (no -wal or -shm left behind).
before=$(listing .flowrun)
run_flowrun spend --json
expect_rc 0 "spend in the project folder"
jq -e --argjson c "$cost" '.months | length == 1 and ((.[0].cost_usd - $c) | fabs) < 1e-12
    and .[0].by_workflow.paid.attempts == 2' "$WORK/stdout" >/dev/null ||
  { cat "$WORK/stdout"; fail "spend does not show the run's \$$cost"; }
run_flowrun spend
expect_rc 0 "spend (text)"
grep -q "by workflow  paid" "$WORK/stdout" || fail "spend text: $(cat "$WORK/stdout")"
[ "$(listing .flowrun)" = "$before" ] || fail "spend changed ./.flowrun: $(diff <(echo "$before") <(listing .flowrun))"
pass "flowrun spend in the project folder finds the run's \$$cost and leaves ./.flowrun as it was"

# From an empty folder: nothing recorded, exit 0, where it looked, no file made.
mkdir "$WORK/empty"
cd "$WORK/empty"
for args in "spend" "spend --sim" "spend --json" "spend --month 2026-01"; do
  # shellcheck disable=SC2086
  run_flowrun $args
  expect_rc 0 "$args in an empty folder"
  [ -z "$(find . -mindepth 1)" ] || fail "$args created: $(listing .)"
done
run_flowrun spend
grep -q "no spend recorded" "$WORK/stdout" || fail "spend says: $(cat "$WORK/stdout")"
grep -qF ".flowrun/state.db" "$WORK/stdout" || fail "spend does not say where it looked: $(cat "$WORK/stdout")"
run_flowrun spend --json
[ "$(jqr '.months | length')" = 0 ] || fail "spend --json: $(cat "$WORK/stdout")"
pass "flowrun spend in an empty folder: exit 0, \"no spend recorded\", names ./.flowrun/state.db, creates nothing"

# --state DIR and \$FLOWRUN_STATE move the state (both for runs and spend);
# --state wins over the variable; --out moves the outputs only.
cd "$WORK/proj"
FLOWRUN_STATE="$WORK/shared" run_flowrun flows/paid.lua --no-cache --out "$WORK/o1" --json
expect_rc 0 "FLOWRUN_STATE"
[ -f "$WORK/shared/state.db" ] || fail "FLOWRUN_STATE: no $WORK/shared/state.db"
[ -s "$WORK/o1/one.txt" ] || fail "--out: no $WORK/o1/one.txt"
[ ! -e ".flowrun/out/$(jqr .run)" ] || fail "--out: outputs also under ./.flowrun/out"
FLOWRUN_STATE="$WORK/shared" run_flowrun flows/paid.lua --no-cache --state "$WORK/mine" --out "$WORK/o2" --json
expect_rc 0 "--state over FLOWRUN_STATE"
[ -f "$WORK/mine/state.db" ] || fail "--state: no $WORK/mine/state.db"
FLOWRUN_STATE="$WORK/shared" run_flowrun spend --json
[ "$(jqr '.months[0].attempts')" = 2 ] || fail "spend with FLOWRUN_STATE: $(cat "$WORK/stdout")"
cd "$WORK/empty"
run_flowrun spend --state "$WORK/mine" --json
[ "$(jqr '.months[0].attempts')" = 2 ] || fail "spend --state: $(cat "$WORK/stdout")"
[ -z "$(find . -mindepth 1)" ] || fail "spend --state created: $(listing .)"
pass "--state DIR and \$FLOWRUN_STATE place the ledger for runs and spend alike; --out the outputs"
