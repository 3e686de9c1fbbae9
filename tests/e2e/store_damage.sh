#!/usr/bin/env bash
# A damaged or emptied state store is never used as if it were whole:
#  - a cache entry whose bytes were damaged (invalid UTF-8 in its text) is a
#    miss, and so is a cached JSON that no longer matches the task's schema:
#    the request is sent again and the output is the fresh reply;
#  - damaged pages in the middle of state.db stop the run at open, exit 74,
#    before any request reaches the provider;
#  - a state.db emptied to 0 bytes (or deleted) after a store existed is
#    exit 74 saying what happened and how to start over, for runs and for
#    `flowrun spend`; removing the marker starts a new ledger on purpose, and
#    a brand-new folder starts one.
# The database is edited with dd at byte offsets found by grep (no sqlite3
# CLI needed); a store is checkpointed into state.db when its last run ends.
source "$(dirname "$0")/lib.bash"
start_sim --latency 5 --tps 0

# patch FILE FROM TO: overwrites every occurrence of the bytes FROM in FILE
# with TO (printf format, same length).
patch() {
  local off n=0
  for off in $(grep -abo -- "$1" "$3" | cut -d: -f1); do
    # shellcheck disable=SC2059
    printf "$2" | dd of="$3" bs=1 seek="$off" conv=notrunc status=none
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || fail "no '$1' in $3"
}

cat >"$WORK/flow.lua" <<LUA
workflow { name = "damage" }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "c", price = { input = 1, output = 2 } }
agent "a" {}
task "plain" { agent = "a", prompt = "REPLY: caf-marker-qq done" }
task "shaped" { agent = "a", prompt = "A name.",
                schema = { type = "object", properties = { zzname = { type = "string" } },
                           required = { "zzname" } } }
LUA

# A brand-new folder: a new ledger, with its marker.
run_flowrun "$WORK/flow.lua" --state "$WORK/st" --out "$WORK/o1" --json
expect_rc 0 "first run"
[ -s "$WORK/st/state.db" ] && [ -f "$WORK/st/state.db.id" ] || fail "no state.db or marker: $(ls -a "$WORK/st")"
[ -e "$WORK/st/state.db-wal" ] && fail "the WAL was not checkpointed at exit"
run_flowrun "$WORK/flow.lua" --state "$WORK/st" --out "$WORK/o2" --json
[ "$(jqr '[.tasks[] | select(.cached)] | length')" = 2 ] || fail "the rerun was not cached"
pass "a fresh folder starts a ledger (state.db and state.db.id); a rerun is cached"

# Damaged cache entries: the text gets a byte that is not UTF-8, the JSON a
# property renamed so it no longer matches the schema.
before=$(sim_requests)
patch 'caf-marker-qq' 'caf\xffmarker-qq' "$WORK/st/state.db"
patch 'zzname' 'zzn4me' "$WORK/st/state.db"
run_flowrun "$WORK/flow.lua" --state "$WORK/st" --out "$WORK/o3" --json
expect_rc 0 "damaged cache entries"
[ "$(jqr '[.tasks[] | select(.cached)] | length')" = 0 ] ||
  fail "a damaged entry was served: $(jqr '[.tasks[] | {name, cached}]')"
[ "$(( $(sim_requests) - before ))" = 2 ] || fail "$(( $(sim_requests) - before )) fresh requests, expected 2"
grep -q 'caf-marker-qq done' "$WORK/o3/plain.txt" || fail "plain output: $(cat "$WORK/o3/plain.txt")"
jq -e '.zzname | type == "string"' "$WORK/o3/shaped.json" >/dev/null || fail "shaped output: $(cat "$WORK/o3/shaped.json")"
pass "a cache entry with invalid UTF-8, and one whose JSON no longer fits the schema, are misses: sent again"

# Damaged pages in the middle of the file: exit 74 at open, nothing sent.
cat >"$WORK/big.lua" <<LUA
workflow { name = "big" }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "c", max_parallel = 8,
                   price = { input = 1, output = 2 } }
agent "a" {}
-- 400 different words a reply (a word repeated would read as a degenerate loop).
local function words(i) local w = {} for k = 1, 400 do w[k] = "w" .. i .. "x" .. k end return table.concat(w, " ") end
for i = 1, 60 do task("t" .. i) { agent = "a", prompt = "REPLY: " .. words(i) } end
LUA
run_flowrun "$WORK/big.lua" --state "$WORK/big" --out "$WORK/o4"
expect_rc 0 "big run"
size=$(stat -c %s "$WORK/big/state.db")
[ "$size" -gt $((40 * 4096)) ] || fail "state.db is only $size bytes"
mid=$(( size / 2 / 4096 ))
head -c $((3 * 4096)) /dev/zero | tr '\0' '\377' |
  dd of="$WORK/big/state.db" bs=4096 seek="$mid" conv=notrunc status=none
before=$(sim_requests)
run_flowrun "$WORK/big.lua" --state "$WORK/big" --out "$WORK/o5" --fresh t1
expect_rc 74 "damaged pages"
expect_stderr "the state database is damaged"
[ "$(sim_requests)" = "$before" ] || fail "$(( $(sim_requests) - before )) requests reached the provider from a damaged store"
pass "damaged pages in the middle of state.db: exit 74 at open, no request sent"

# A store that existed, emptied to 0 bytes: refused, for runs and reports.
: >"$WORK/st/state.db"
before=$(sim_requests)
run_flowrun "$WORK/flow.lua" --state "$WORK/st" --out "$WORK/o6" --no-cache
expect_rc 74 "0-byte state.db"
expect_stderr "the state database is empty (0 bytes), but a state store was created here"
expect_stderr "remove $WORK/st/state.db.id"
[ "$(sim_requests)" = "$before" ] || fail "a run on an emptied store sent requests"
run_flowrun spend --state "$WORK/st" --json
expect_rc 74 "spend on a 0-byte state.db"
expect_stderr "monthly cap's memory"
rm "$WORK/st/state.db"
run_flowrun "$WORK/flow.lua" --state "$WORK/st" --out "$WORK/o7"
expect_rc 74 "deleted state.db"
expect_stderr "the state database is missing"
pass "an emptied or deleted state.db of a store that existed: exit 74, saying how to start over"

# Starting over on purpose: remove the marker.
rm "$WORK/st/state.db.id"
run_flowrun "$WORK/flow.lua" --state "$WORK/st" --out "$WORK/o8" --json
expect_rc 0 "after removing the marker"
[ "$(jqr '[.tasks[] | select(.cached)] | length')" = 0 ] || fail "a new ledger had cached results"
[ -f "$WORK/st/state.db.id" ] || fail "the new ledger has no marker"
pass "removing state.db.id starts a new ledger deliberately"
