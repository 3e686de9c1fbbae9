#!/usr/bin/env bash
# Builds flowrun twice (a normal build and an ASan+UBSan build) and runs the
# whole test suite on each, then every fuzz target for 10 s. This is what
# CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/deps.sh
jobs=$(nproc)

echo "== normal build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== ASan+UBSan build"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFLOWRUN_SANITIZE=ON
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs"

# Every fuzz target (tests/fuzz) for a bounded time on its seed corpus,
# with ASan and UBSan: 10 s each, two at a time, plus the clang build
# (about 75 s on 2 cores). Once per CI run: the README check's run of this
# script on a fresh clone of the same commit skips it.
if [ -z "${FLOWRUN_README_CHECK:-}" ]; then
  echo "== fuzz targets, 10 s each"
  bash tests/fuzz/run.sh --seconds 10
fi

# The README's two commands, in order, on a fresh clone of HEAD (this runs
# the whole of this script again there, which does not recurse).
if [ -z "${FLOWRUN_README_CHECK:-}" ]; then
  echo "== the README's commands on a fresh clone"
  bash tests/readme.sh
fi
