#!/usr/bin/env bash
# Runs end-to-end tests with flowrun under valgrind: any leak or memory error
# fails the test. Not part of the default suite (it is slow); run it after a
# build in build/: bash tests/valgrind.sh [test names...]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 2; }
wrapper=$(mktemp)
trap 'rm -f "$wrapper"' EXIT
cat >"$wrapper" <<WRAP
#!/usr/bin/env bash
exec valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \\
  --errors-for-leak-kinds=definite,indirect --error-exitcode=99 "$PWD/build/flowrun" "\$@"
WRAP
chmod +x "$wrapper"
tests=("$@")
[ "${#tests[@]}" -gt 0 ] || tests=(cli invalid dataflow examples failure protocols control plan savings health)
failed=0
for t in "${tests[@]}"; do
  if FLOWRUN="$wrapper" FLOWRUN_SIM="$PWD/build/flowrun-sim" SRC="$PWD" bash "tests/e2e/$t.sh" >"/tmp/valgrind-$t.log" 2>&1; then
    echo "ok - $t under valgrind"
  else
    echo "not ok - $t under valgrind (log: /tmp/valgrind-$t.log)"
    failed=$((failed + 1))
  fi
done
echo "$(( ${#tests[@]} - failed )) passed, $failed failed"
[ "$failed" -eq 0 ]
