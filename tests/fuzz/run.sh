#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, ASan and
# UBSan in build-fuzz/, and runs each for a bounded time on a scratch copy of
# its seed corpus (tests/fuzz/corpus/<target>/), so the repository's corpus is
# never touched. Exits non-zero when any target crashes, leaks, hangs or
# breaks an invariant. tests/run.sh (CI) runs every target for 10 s after
# the two suites.
#
#   bash tests/fuzz/run.sh                      every target, 60 s each
#   bash tests/fuzz/run.sh --seconds 10         every target, 10 s each (CI)
#   FUZZ_SECONDS=300 bash tests/fuzz/run.sh     longer
#   FUZZ_TARGETS="sse validate" bash tests/fuzz/run.sh
#   FUZZ_JOBS=1 bash tests/fuzz/run.sh          one target at a time (default: one per core)
#   FUZZ_WORK=/tmp/fz bash tests/fuzz/run.sh    scratch dir (default: mktemp)
#
# A crash leaves its input in $FUZZ_WORK/artifacts/<target>/; replay it with
# build-fuzz/<target> <file>.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${FUZZ_SECONDS:-60}"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --seconds)
      [ "$#" -ge 2 ] || { echo "--seconds needs a number of seconds" >&2; exit 2; }
      seconds=$2
      shift 2
      ;;
    --seconds=*) seconds=${1#--seconds=}; shift ;;
    *) echo "unknown option: $1 (usage: tests/fuzz/run.sh [--seconds N])" >&2; exit 2 ;;
  esac
done
case "$seconds" in
  '' | *[!0-9]* | 0) echo "--seconds (or FUZZ_SECONDS) must be a positive whole number, got '$seconds'" >&2; exit 2 ;;
esac

# Tools: the project's own dependencies, then clang and its runtime
# libraries (libFuzzer and the sanitizers live in libclang-rt-*-dev).
bash tests/deps.sh
# Can clang link a libFuzzer target with the sanitizers?
can_fuzz() {
  local probe
  probe=$(mktemp "${TMPDIR:-/tmp}/flowrun-fuzz-probe.XXXXXX")
  printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' |
    clang -fsanitize=fuzzer,address,undefined -x c - -o "$probe" >/dev/null 2>&1
  local rc=$?
  rm -f "$probe"
  return $rc
}
missing=()
if ! command -v clang >/dev/null 2>&1; then
  missing+=(clang libclang-rt-dev)
elif ! can_fuzz; then
  missing+=("libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  can_fuzz || { echo "clang still cannot link a libFuzzer target" >&2; exit 1; }
fi

all=()
for src in tests/fuzz/fuzz_*.c; do
  all+=("$(basename "$src" .c)")
done
targets=()
if [ -n "${FUZZ_TARGETS:-}" ]; then
  for t in $FUZZ_TARGETS; do
    t="fuzz_${t#fuzz_}"
    [ -f "tests/fuzz/$t.c" ] || { echo "no such fuzz target: $t" >&2; exit 2; }
    targets+=("$t")
  done
else
  targets=("${all[@]}")
fi

echo "== building ${targets[*]} in build-fuzz"
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFLOWRUN_FUZZ=ON -DFLOWRUN_TESTS=OFF -DFLOWRUN_SANITIZE=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}"

work="${FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/flowrun-fuzz.XXXXXX")}"
mkdir -p "$work"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# fuzz_one TARGET: runs one target for its bounded time; its exit code goes
# to $work/TARGET.rc, its output to $work/TARGET.log.
fuzz_one() {
  local t=$1 corpus="$work/corpus/$1" artifacts="$work/artifacts/$1/" rc
  mkdir -p "$corpus" "$artifacts"
  [ -d "tests/fuzz/corpus/$t" ] && cp -r "tests/fuzz/corpus/$t/." "$corpus/"
  local dict=()
  [ -f "tests/fuzz/dict/$t.dict" ] && dict=("-dict=tests/fuzz/dict/$t.dict")
  set +e
  "build-fuzz/$t" "$corpus" "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 -artifact_prefix="$artifacts" \
    >"$work/$t.log" 2>&1
  rc=$?
  set -e
  echo "$rc" >"$work/$t.rc"
}

# One fuzzer per core at a time (each is single-threaded), FUZZ_JOBS to change.
jobs="${FUZZ_JOBS:-$(nproc)}"
echo "== ${#targets[@]} targets, ${seconds}s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
wait || true

passed=0
failed=0
for t in "${targets[@]}"; do
  artifacts="$work/artifacts/$t/"
  rc=$(cat "$work/$t.rc" 2>/dev/null || echo 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -1 || true)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$work/$t.log" | tail -1 || true)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "   $t ok: ${execs:-?} runs, ${cov:-no coverage line}"
  else
    failed=$((failed + 1))
    echo "   $t FAILED (exit $rc) after ${execs:-?} runs; log: $work/$t.log"
    { grep -E 'ERROR: |invariant broken|SUMMARY:|^whole:|^cut:' "$work/$t.log" || true; } |
      head -8 | sed 's/^/   /'
    ls "$artifacts" | sed "s|^|   reproducer: $artifacts|" || true
  fi
done

echo "fuzz: $passed passed, $failed failed"
if [ "$failed" -eq 0 ] && [ -z "${FUZZ_WORK:-}" ]; then
  rm -rf "$work"
else
  echo "scratch dir kept: $work"
fi
[ "$failed" -eq 0 ]
