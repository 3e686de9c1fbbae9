#!/usr/bin/env bash
# libcurl and libpq are opened when a run needs them, not at every start
# (engine/util/dlib.h): the dynamic loader's own account of what it opens
# (LD_DEBUG=files: linked and dlopen'ed libraries alike) shows neither for
# a run on a plain http:// endpoint with a SQLite state, which gets its
# answers; libcurl for a run with an https:// endpoint (opened at the run's
# start) and libpq for one whose state is a postgresql:// URL.
source "$(dirname "$0")/lib.bash"
start_sim --latency 20 --tps 0

# loaded FILE: the libcurl and libpq sonames FILE's LD_DEBUG lines opened.
loaded() { grep -oE "file=lib(curl|pq)\.so\.[0-9]+" "$1" | sed 's/^file=//' | sort -u | tr '\n' ' '; }

cat >"$WORK/plain.lua" <<EOF
endpoint "gpu" { tier = "local", url = "$SIM_URL/v1", model = "m" }
agent "a" {}
task "t1" { agent = "a", prompt = "REPLY: one" }
task "t2" { agent = "a", deps = { "t1" }, prompt = "REPLY: two" }
EOF
set +e
LD_DEBUG=files "$FLOWRUN" "$WORK/plain.lua" --state "$WORK/st" --out "$WORK/out" -q \
  >"$WORK/stdout" 2>"$WORK/stderr"
RC=$?
set -e
expect_rc 0 "the plain http:// run"
[ "$(cat "$WORK/out/t2.txt")" = two ] || fail "the plain run's t2 output"
grep -q "file=libsqlite3\.so" "$WORK/stderr" || fail "LD_DEBUG=files listed no library: nothing to read"
[ -z "$(loaded "$WORK/stderr")" ] || fail "a plain http:// run on SQLite opened $(loaded "$WORK/stderr")"
pass "a plain http:// run on a SQLite state opens neither libcurl nor libpq, and answers"

cat >"$WORK/tls.lua" <<EOF
endpoint "cloud" { tier = "cloud", url = "https://127.0.0.1:9/v1", model = "m" }
agent "a" {}
task "t1" { agent = "a", prompt = "REPLY: one", retries = 0, timeout = 5 }
EOF
set +e
LD_DEBUG=files timeout 60 "$FLOWRUN" "$WORK/tls.lua" --state "$WORK/st" --out "$WORK/out2" -q \
  >"$WORK/stdout" 2>"$WORK/ld2"
RC=$?
set -e
[ "$RC" -ne 124 ] || fail "the https:// run still going after 60 s"
[ "$RC" -ne 0 ] || fail "a request to a closed port succeeded"
[ "$(loaded "$WORK/ld2")" = "libcurl.so.4 " ] || fail "an https:// run opened '$(loaded "$WORK/ld2")', not libcurl alone"
pass "an https:// endpoint's run opens libcurl (its request to a closed port fails, exit $RC)"

set +e
LD_DEBUG=files timeout 60 "$FLOWRUN" "$WORK/plain.lua" \
  --state "postgresql://flowrun@127.0.0.1:9/none?connect_timeout=2" --out "$WORK/out3" -q \
  >"$WORK/stdout" 2>"$WORK/ld3"
RC=$?
set -e
[ "$RC" -ne 124 ] || fail "the postgresql:// run still going after 60 s"
[ "$RC" -ne 0 ] || fail "a state store on a closed port was reached"
case "$(loaded "$WORK/ld3")" in *libpq.so.5*) ;; *) fail "a postgresql:// state opened '$(loaded "$WORK/ld3")', not libpq" ;; esac
pass "a postgresql:// state opens libpq (the server on a closed port is not there, exit $RC)"
