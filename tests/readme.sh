#!/usr/bin/env bash
# The README's two commands, in order, on a fresh clone: clones HEAD of the
# repository this script is in into a temporary folder, runs the first
# command of "Start here" there verbatim (build, then the rehearsal of an
# example), then the second (the whole test suite). Both are read from
# README.md, so this follows the README as it is written.
#
# HEAD is what is cloned: commit (or `git stash create`) first to check
# uncommitted work. tests/run.sh calls this at its end; the nested
# tests/run.sh sees FLOWRUN_README_CHECK=1 and does not call it again.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# A fresh user's environment: no state directory, no policy directory, no
# user config, nothing of this checkout's builds.
unset FLOWRUN_STATE FLOWRUN_LUA_DIR FLOWRUN FLOWRUN_SIM
export HOME="$TMP/home" XDG_CONFIG_HOME="$TMP/home/.config"
mkdir -p "$HOME"

rev=$(git -C "$SRC" rev-parse HEAD)
git clone -q --no-checkout "$SRC" "$TMP/flowrun"
cd "$TMP/flowrun"
git fetch -q "$SRC" HEAD
git checkout -q --detach FETCH_HEAD
[ "$(git rev-parse HEAD)" = "$rev" ] || fail "the clone is not at $rev"

# block N: the lines of the Nth fenced block after the "## Start here" heading.
block() {
  awk -v want="$1" '
    /^## / { if (started) exit; if ($0 ~ /^## Start here/) started = 1; next }
    started && /^```/ { fences++; next }
    started && fences == 2 * want - 1 { print }
  ' README.md
}
first=$(block 1)
second=$(block 2)
[ -n "$first" ] || fail "README.md: no first command under \"## Start here\""
[ -n "$second" ] || fail "README.md: no second command under \"## Start here\""

echo "== README, first command (in $TMP/flowrun): $first"
bash -c "$first" || fail "the README's first command failed: $first"
# The rehearsal keeps its state where the docs say: ./.flowrun of the
# folder it ran from, not beside the example.
[ -f .flowrun/sim.db ] || fail "the rehearsal left no ./.flowrun/sim.db"
[ ! -e workflows/.flowrun ] || fail "the rehearsal left state in workflows/.flowrun"
[ -z "$(git status --porcelain)" ] || fail "the first command left untracked files: $(git status --porcelain)"

echo "== README, second command (in $TMP/flowrun): $second"
FLOWRUN_README_CHECK=1 bash -c "$second" || fail "the README's second command failed after the first: $second"
echo "ok - the README's two commands pass in order on a fresh clone of $rev"
