#!/usr/bin/env bash
# The include layering of docs/architecture.md, checked on a source tree.
# Every quoted include of engine/, dsl/, providers/ and tests/ (*.c, *.h) is
# an edge; the rules are:
#   - dsl/ and providers/ include nothing of engine/ but engine/util/;
#   - engine/util/ includes only engine/util/;
#   - engine/sim/ includes only engine/util/ and itself;
#   - engine/, dsl/ and providers/ never include tests/;
#   - of the product, only engine/main.c (and engine/sim/ itself) includes engine/sim/;
#   - no file includes another folder's *_int.h (a unit test, tests/unit/test_*.c,
#     may include the internal header of the module it tests white-box);
#   - the include graph of the tree's own files has no cycle.
# Each violation is printed as `file:line: includes X: rule`; the exit status
# is 1 when there is one. The build runs it (target layering_check), CTest
# runs it with --self-check (test `layering`).
#
#   bash tests/layering.sh                      checks this tree
#   bash tests/layering.sh --root DIR           checks DIR
#   bash tests/layering.sh --self-check [...]   first proves that each rule
#                                               fails a small bad tree, then checks
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
self_check=false
while [ "$#" -gt 0 ]; do
  case "$1" in
    --root)
      [ "$#" -ge 2 ] || { echo "--root needs a directory" >&2; exit 2; }
      root=$2
      shift 2
      ;;
    --self-check) self_check=true; shift ;;
    *) echo "unknown option: $1 (usage: tests/layering.sh [--root DIR] [--self-check])" >&2; exit 2 ;;
  esac
done

# Prints the violations of the tree at $1; returns 1 when there is any.
check_tree() {
  local dir=$1 files
  [ -d "$dir" ] || { echo "layering: no directory $dir" >&2; return 2; }
  files=$(cd "$dir" && find engine dsl providers tests -type f \( -name '*.c' -o -name '*.h' \) \
    2>/dev/null | LC_ALL=C sort)
  [ -n "$files" ] || { echo "layering: no sources under $dir" >&2; return 2; }
  # Input: the file list, a separator, then file:line:text of every quoted include.
  { printf '%s\n' "$files"; echo '--'
    (cd "$dir" && printf '%s\n' "$files" | tr '\n' '\0' |
      xargs -0 grep -Hn -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' || true)
  } | LC_ALL=C awk '
    function norm(p,   n, parts, out, i, k) {
      n = split(p, parts, "/"); k = 0
      for (i = 1; i <= n; i++) {
        if (parts[i] == "." || parts[i] == "") continue
        if (parts[i] == ".." && k > 0) { k--; continue }
        out[++k] = parts[i]
      }
      p = ""
      for (i = 1; i <= k; i++) p = p (i > 1 ? "/" : "") out[i]
      return p
    }
    function dirof(p) { return p ~ /\// ? substr(p, 1, match(p, /\/[^\/]*$/) - 1) : "" }
    function under(p, d) { return substr(p, 1, length(d)) == d }
    function product(p) { return under(p, "engine/") || under(p, "dsl/") || under(p, "providers/") }
    function report(f, l, x, why) { printf "%s:%s: includes %s: %s\n", f, l, x, why; bad++ }
    # Depth-first search from u; a grey target closes a cycle, printed once per back edge.
    function visit(u,   i, v, k, path) {
      color[u] = 1; stack[++depth] = u
      for (i = 1; i <= nout[u]; i++) {
        v = out[u, i]
        if (color[v] == 1) {
          path = ""
          for (k = depth; k >= 1 && stack[k] != v; k--) ;
          for (; k <= depth; k++) path = path stack[k] " -> "
          report(u, outline[u, i], v, "the include graph has a cycle: " path v)
        } else if (color[v] == 0) {
          visit(v)
        }
      }
      depth--; color[u] = 2
    }
    !listed && $0 == "--" { listed = 1; next }
    !listed { exists[$0] = 1; order[++nfiles] = $0; next }
    {
      f = $0; sub(/:.*/, "", f)
      rest = substr($0, length(f) + 2); l = rest; sub(/:.*/, "", l)
      inc = substr(rest, length(l) + 2)
      sub(/^[^"]*"/, "", inc); sub(/".*/, "", inc)
      x = norm(inc)
      if (!(x in exists) && (norm(dirof(f) "/" inc) in exists)) x = norm(dirof(f) "/" inc)
      fd = dirof(f); xd = dirof(x)
      if ((under(f, "dsl/") || under(f, "providers/")) && under(x, "engine/") && !under(x, "engine/util/"))
        report(f, l, x, "dsl/ and providers/ include nothing of engine/ but engine/util/")
      if (under(f, "engine/util/") && !under(x, "engine/util/"))
        report(f, l, x, "engine/util/ includes only engine/util/")
      if (under(f, "engine/sim/") && !under(x, "engine/sim/") && !under(x, "engine/util/"))
        report(f, l, x, "engine/sim/ includes only engine/util/ and itself")
      if (product(f) && under(x, "tests/"))
        report(f, l, x, "engine/, dsl/ and providers/ never include tests/")
      if (product(f) && under(x, "engine/sim/") && !under(f, "engine/sim/") && f != "engine/main.c")
        report(f, l, x, "only engine/main.c includes engine/sim/")
      if (x ~ /_int\.h$/ && xd != fd && f !~ /^tests\/unit\/test_[^\/]*\.c$/)
        report(f, l, x, "no file includes another folder'\''s *_int.h")
      if (x in exists) { n = ++nout[f]; out[f, n] = x; outline[f, n] = l }
    }
    END {
      for (i = 1; i <= nfiles; i++) if (color[order[i]] == 0) visit(order[i])
      if (bad) { printf "layering: %d violation(s) in %s\n", bad, root > "/dev/stderr"; exit 1 }
    }
  ' root="$dir"
}

# Builds a small good tree in $1 (every rule holds), with an include on line 2 of each file.
good_tree() {
  local t=$1
  mkdir -p "$t"/engine/util "$t"/engine/sim "$t"/dsl "$t"/providers "$t"/tests/unit/support \
    "$t"/tests/fuzz
  put() { mkdir -p "$(dirname "$t/$1")"; printf '/* %s */\n#include "%s"\n' "$1" "$2" >"$t/$1"; }
  printf '#pragma once\n' >"$t/engine/util/err.h"
  put engine/util/err.c engine/util/err.h
  put engine/sim/sim.h engine/util/err.h
  put engine/sim/sim_int.h engine/sim/sim.h
  put engine/sim/sim.c engine/sim/sim_int.h
  put dsl/load_int.h engine/util/err.h
  put dsl/load.c dsl/load_int.h
  put providers/provider.h engine/util/err.h
  put engine/run.h dsl/load_int.h
  sed -i 's#dsl/load_int.h#providers/provider.h#' "$t/engine/run.h"
  put engine/run.c engine/run.h
  put engine/main.c engine/sim/sim.h
  put tests/unit/support/harness.h providers/provider.h
  put tests/unit/test_load.c dsl/load_int.h
  put tests/unit/test_sim.c tests/unit/support/harness.h
  put tests/fuzz/split.h engine/util/err.h
  put tests/fuzz/fuzz_x.c split.h
}

# Proves that the check passes the good tree and fails, with the right
# file:line and rule, a copy of it broken in each rule's way.
self_check() {
  local out ok=true
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  good_tree "$tmp/good"
  if ! out=$(check_tree "$tmp/good" 2>&1); then
    echo "self-check: the good tree fails:"; echo "$out"; ok=false
  fi
  # case: file, included path, the expected report
  local cases=(
    "dsl/bad.c|engine/run.h|dsl/bad.c:2: includes engine/run.h: dsl/ and providers/ include nothing of engine/ but engine/util/"
    "providers/bad.c|engine/run.h|providers/bad.c:2: includes engine/run.h: dsl/ and providers/ include nothing of engine/ but engine/util/"
    "engine/util/bad.c|providers/provider.h|engine/util/bad.c:2: includes providers/provider.h: engine/util/ includes only engine/util/"
    "engine/sim/bad.c|engine/run.h|engine/sim/bad.c:2: includes engine/run.h: engine/sim/ includes only engine/util/ and itself"
    "engine/bad.c|tests/unit/support/harness.h|engine/bad.c:2: includes tests/unit/support/harness.h: engine/, dsl/ and providers/ never include tests/"
    "dsl/bad.c|tests/fuzz/split.h|dsl/bad.c:2: includes tests/fuzz/split.h: engine/, dsl/ and providers/ never include tests/"
    "engine/bad.c|engine/sim/sim.h|engine/bad.c:2: includes engine/sim/sim.h: only engine/main.c includes engine/sim/"
    "engine/bad.c|dsl/load_int.h|engine/bad.c:2: includes dsl/load_int.h: no file includes another folder's *_int.h"
    "tests/unit/support/bad.h|dsl/load_int.h|tests/unit/support/bad.h:2: includes dsl/load_int.h: no file includes another folder's *_int.h"
    "engine/sim/sim.h|engine/sim/sim_int.h|engine/sim/sim_int.h:2: includes engine/sim/sim.h: the include graph has a cycle: engine/sim/sim.h -> engine/sim/sim_int.h -> engine/sim/sim.h"
  )
  local i=0 c file inc want
  for c in "${cases[@]}"; do
    i=$((i + 1))
    IFS='|' read -r file inc want <<<"$c"
    cp -r "$tmp/good" "$tmp/bad$i"
    mkdir -p "$(dirname "$tmp/bad$i/$file")"
    printf '/* %s */\n#include "%s"\n' "$file" "$inc" >"$tmp/bad$i/$file"
    if out=$(check_tree "$tmp/bad$i" 2>/dev/null); then
      echo "self-check: a tree where $file includes $inc passes"; ok=false
    elif ! grep -qxF -- "$want" <<<"$out"; then
      echo "self-check: a tree where $file includes $inc fails without '$want':"; echo "$out"
      ok=false
    fi
  done
  $ok && echo "layering: self-check passed (${#cases[@]} bad trees fail, the good one passes)"
  $ok
}

if $self_check; then
  self_check || exit 1
fi
check_tree "$root"
