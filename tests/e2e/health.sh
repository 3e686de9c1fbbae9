#!/usr/bin/env bash
# Endpoint health: a rate-limited endpoint is cooled down for every task
# instead of being hammered (one slot, so every request after a 429 was sent
# after flowrun saw it: the simulator counts any that arrive inside the
# Retry-After window); a local endpoint that refuses connections
# mid-run sheds its work to the others and the run finishes.
source "$(dirname "$0")/lib.bash"
start_sim --latency 20 --tps 0 --model limited:faults=429+429+429+429+429 --model m2:latency=150

cat >"$WORK/limited.lua" <<LUA
workflow { defaults = { retries = 6 } }
endpoint "limited" { tier = "local", url = "$SIM_URL/v1", model = "limited", max_parallel = 1 }
agent "a" {}
for i = 1, 3 do task("t" .. i) { agent = "a", prompt = "REPLY: done " .. i } end
LUA
run_flowrun "$WORK/limited.lua" --out "$WORK/o1" --json
expect_rc 0 "rate-limited endpoint"
[ "$(sim_stats | jq .models.limited.requests)" = 8 ] ||
  fail "$(sim_stats | jq .models.limited.requests) requests: 5 answered 429, 3 should have succeeded"
[ "$(sim_stats | jq .models.limited.early)" = 0 ] ||
  fail "$(sim_stats | jq .models.limited.early) requests arrived inside a Retry-After window"
[ "$(jqr '.endpoints.limited.cooldowns')" -ge 1 ] || fail "no cooldown recorded"
awk -v w="$(jqr '.endpoints.limited.cooldown_ms')" 'BEGIN { exit !(w >= 900) }' || fail "cooldown_ms $(jqr '.endpoints.limited.cooldown_ms')"
pass "5 x 429 with Retry-After: the endpoint cooled down ($(jqr '.endpoints.limited.cooldowns') times, $(jqr '.endpoints.limited.cooldown_ms | floor') ms), 8 requests in all, every task done"

# A local endpoint with nothing listening: its tasks go elsewhere.
dead_port=$(( (RANDOM % 1000) + 21000 ))
while (exec 3<>/dev/tcp/127.0.0.1/$dead_port) 2>/dev/null; do dead_port=$((dead_port + 1)); done
cat >"$WORK/down.lua" <<LUA
workflow { defaults = { retries = 1 } }
endpoint "box1" { tier = "local", url = "http://127.0.0.1:$dead_port/v1", model = "x",
                  max_parallel = 4, quality = 0.7 }
endpoint "box2" { tier = "local", url = "$SIM_URL/v1", model = "alive", max_parallel = 2, quality = 0.6 }
endpoint "cloud" { tier = "cloud", url = "$SIM_URL/v1", model = "cloudy", max_parallel = 4,
                   price = { input = 1, output = 1 } }
agent "a" {}
for i = 1, 12 do task("t" .. i) { agent = "a", private = (i % 3 == 0), prompt = "REPLY: r" .. i } end
LUA
run_flowrun "$WORK/down.lua" --out "$WORK/o2" --json
expect_rc 0 "a local endpoint down"
[ "$(jqr '[.tasks[] | select(.endpoint == "box1" and .status == "ok")] | length')" = 0 ] || fail "box1 answered?"
[ "$(jqr '[.tasks[] | select(.private and .tier != "local")] | length')" = 0 ] || fail "private work left the local tier"
[ "$(jqr '.endpoints.box1.cooldowns')" -ge 1 ] || fail "box1 was not cooled down"
for i in 1 6 12; do [ "$(cat "$WORK/o2/t$i.txt")" = "r$i" ] || fail "t$i output"; done
pass "a local endpoint that refuses connections: its work went to box2 and the cloud, private work stayed local"

# An endpoint that goes down mid-run: its own simulator process is killed
# after it has answered some requests; the rest of the work moves on. Both
# endpoints answer in 150 ms, so the run is still going when the kill lands.
exec {S2}< <(exec "$FLOWRUN_SIM" --port 0 --latency 150 --tps 0)
sim2=$!
read -r -t 20 -u "$S2" SIM2_URL || fail "second simulator"
cat >"$WORK/midrun.lua" <<LUA
workflow { defaults = { retries = 1 } }
endpoint "box1" { tier = "local", url = "$SIM2_URL/v1", model = "m1", max_parallel = 4, quality = 0.7 }
endpoint "box2" { tier = "local", url = "$SIM_URL/v1", model = "m2", max_parallel = 2, quality = 0.6 }
agent "a" {}
for i = 1, 40 do task("t" .. i) { agent = "a", private = (i % 4 == 0), prompt = "REPLY: m" .. i } end
LUA
"$FLOWRUN" "$WORK/midrun.lua" --out "$WORK/o3" --json >"$WORK/stdout" 2>"$WORK/stderr" &
pid=$!
for _ in $(seq 1 400); do
  [ "$(curl -sf "$SIM2_URL/sim/stats" | jq '.models.m1.requests // 0')" -ge 6 ] && break
  sleep 0.01
done
m1_sent=$(curl -sf "$SIM2_URL/sim/stats" | jq '.models.m1.requests // 0')
run_alive=yes; kill -0 "$pid" 2>/dev/null || run_alive=no
kill -9 "$sim2"; wait "$sim2" 2>/dev/null || true
[ "$m1_sent" -ge 6 ] || fail "box1 got $m1_sent requests before the kill, not 6"
[ "$run_alive" = yes ] || fail "the run ended before box1 went down: the test proves nothing"
set +e; wait "$pid"; RC=$?; set -e
expect_rc 0 "an endpoint down mid-run"
[ "$(jqr '[.tasks[] | select(.status == "ok")] | length')" = 40 ] || fail "not every task finished"
[ "$(jqr '[.tasks[] | select(.endpoint == "box1")] | length')" -ge 1 ] || fail "box1 never served"
[ "$(jqr '[.tasks[] | select(.endpoint == "box2")] | length')" -ge 1 ] || fail "box2 never served"
[ "$(jqr '.endpoints.box1.cooldowns')" -ge 1 ] || fail "box1 was not cooled down after it went down"
for i in 1 20 40; do [ "$(cat "$WORK/o3/t$i.txt")" = "m$i" ] || fail "t$i output"; done
pass "an endpoint that goes down mid-run: its remaining work moved to box2, private work included, all 40 done"
