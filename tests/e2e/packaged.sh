#!/usr/bin/env bash
# The packaged tool: the manual page flowrun(1) names every command and
# every option --help lists; `cmake --install` puts the man page, the bash
# and zsh completions and the LuaLS definitions under the prefix, each what
# the binary prints; the bash completion, loaded in plain bash (no
# bash-completion package), offers the commands after `flowrun ` and a
# run's options after `flowrun run --`.
source "$(dirname "$0")/lib.bash"

# Every command of `flowrun help`, and every option of each one's help.
run_flowrun help
expect_rc 0 "flowrun help"
commands=$(sed -n '/^commands:/,/^$/p' "$WORK/stdout" | awk 'NF > 1 {print $1}' | grep -v '^commands:$')
[ "$(echo "$commands" | wc -l)" -ge 10 ] || fail "flowrun help lists too few commands: $commands"
for c in init defs completion man; do
  grep -qx "$c" <<<"$commands" || fail "flowrun help does not list $c"
done
run_flowrun man
expect_rc 0 "flowrun man"
cp "$WORK/stdout" "$WORK/flowrun.1"
head -1 "$WORK/flowrun.1" | grep -q '^\.TH FLOWRUN 1 ' || fail "flowrun man: no .TH line"
sed 's/\\-/-/g' "$WORK/flowrun.1" >"$WORK/man.txt"
nopts=0
for c in $commands; do
  grep -qx "\.SS $c" "$WORK/man.txt" || fail "the man page has no section for the command $c"
  "$FLOWRUN" help "$c" >"$WORK/help-$c.txt"
  for o in $(grep -E '^  -' "$WORK/help-$c.txt" | grep -oE -- '(^| )--?[a-zA-Z][a-zA-Z0-9-]*' | tr -d ' ' | sort -u); do
    # The option, under its command's section.
    awk -v c="$c" -v o="$o" '$0 == ".SS " c {on = 1; next} /^\.SS / {on = 0} on && index($0, o) {found = 1} END {exit !found}' "$WORK/man.txt" ||
      fail "the man page does not list $o under $c"
    nopts=$((nopts + 1))
  done
done
pass "flowrun(1) has a section for each of the $(echo "$commands" | wc -w) commands with its $nopts options of --help"

if command -v man >/dev/null && man --version 2>/dev/null | grep -q "^man "; then
  MANWIDTH=80 man -l "$WORK/flowrun.1" 2>"$WORK/man.err" >"$WORK/man.rendered" </dev/null || fail "man -l flowrun.1 failed: $(cat "$WORK/man.err")"
  [ ! -s "$WORK/man.err" ] || fail "man -l warns: $(head -5 "$WORK/man.err")"
  grep -q -- "--sim-latency" "$WORK/man.rendered" || fail "the rendered page lacks --sim-latency"
  pass "man -l renders flowrun(1) without a warning"
else
  echo "skip - man -l: man-db is not installed"
fi

# cmake --install to a temporary prefix.
BUILD=$(dirname "$FLOWRUN")
[ -f "$BUILD/cmake_install.cmake" ] || fail "$BUILD is not a CMake build directory"
P="$WORK/prefix"
cmake --install "$BUILD" --prefix "$P" >"$WORK/install.log" || { cat "$WORK/install.log"; fail "cmake --install"; }
for f in share/man/man1/flowrun.1 share/bash-completion/completions/flowrun \
  share/zsh/site-functions/_flowrun share/flowrun/flowrun.d.lua; do
  [ -s "$P/$f" ] || fail "not installed: $f"
done
cmp -s "$P/share/man/man1/flowrun.1" "$WORK/flowrun.1" || fail "the installed man page is not what flowrun man prints"
"$FLOWRUN" completion bash | cmp -s - "$P/share/bash-completion/completions/flowrun" || fail "the installed bash completion is stale"
"$FLOWRUN" completion zsh | cmp -s - "$P/share/zsh/site-functions/_flowrun" || fail "the installed zsh completion is stale"
"$FLOWRUN" defs | cmp -s - "$P/share/flowrun/flowrun.d.lua" || fail "the installed definitions are not what flowrun defs prints"
head -1 "$P/share/zsh/site-functions/_flowrun" | grep -qx '#compdef flowrun' || fail "_flowrun has no #compdef line"
if command -v zsh >/dev/null; then
  zsh -n "$P/share/zsh/site-functions/_flowrun" || fail "zsh -n _flowrun"
fi
pass "cmake --install puts flowrun(1), the bash and zsh completions and the definitions under share/"

# complete WORDS...: what the installed bash completion offers for the last
# word, one a line, in a plain bash (no rc files, no bash-completion).
complete_words() {
  env -i PATH="$PATH" HOME="$WORK" bash --norc --noprofile -c '
    source "$1"; shift
    complete -p flowrun >/dev/null || exit 3
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    _flowrun flowrun "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf "%s\n" "${COMPREPLY[@]}"' bash "$P/share/bash-completion/completions/flowrun" "$@"
}
mkdir comp && cd comp
touch pipeline.lua notes.txt
complete_words flowrun "" >"$WORK/c1" || fail "the bash completion did not load"
for c in $commands; do
  grep -qx "$c" "$WORK/c1" || fail "completing 'flowrun ' does not offer $c"
done
grep -qx pipeline.lua "$WORK/c1" || fail "completing 'flowrun ' does not offer the workflow pipeline.lua"
! grep -qx notes.txt "$WORK/c1" || fail "completing 'flowrun ' offers notes.txt"
complete_words flowrun run -- >"$WORK/c2"
for o in $(grep -E '^  -' "$WORK/help-run.txt" | grep -oE -- '(^| )--[a-zA-Z][a-zA-Z0-9-]*' | tr -d ' '); do
  grep -qx -- "$o" "$WORK/c2" || fail "completing 'flowrun run --' does not offer $o"
done
! grep -qx -- "--month" "$WORK/c2" || fail "completing 'flowrun run --' offers spend's --month"
complete_words flowrun pl >"$WORK/c3"
[ "$(tr '\n' ' ' <"$WORK/c3")" = "plan " ] || fail "completing 'flowrun pl' gives [$(cat "$WORK/c3")], not plan"
complete_words flowrun spend --m >"$WORK/c4"
[ "$(cat "$WORK/c4")" = "--month" ] || fail "completing 'flowrun spend --m' gives [$(cat "$WORK/c4")]"
complete_words flowrun completion "" >"$WORK/c5"
[ "$(sort "$WORK/c5" | tr '\n' ' ')" = "bash zsh " ] || fail "completing 'flowrun completion ' gives [$(cat "$WORK/c5")]"
complete_words flowrun help co >"$WORK/c6"
[ "$(cat "$WORK/c6")" = completion ] || fail "completing 'flowrun help co' gives [$(cat "$WORK/c6")]"
complete_words flowrun pipeline.lua --no-ca >"$WORK/c7"
[ "$(cat "$WORK/c7")" = "--no-cache" ] || fail "completing 'flowrun pipeline.lua --no-ca' gives [$(cat "$WORK/c7")]"
pass "bash completion (plain complete -F): the commands and workflows after 'flowrun ', a run's options after 'flowrun run --', each command's words"
