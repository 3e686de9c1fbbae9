#!/usr/bin/env bash
# Installs what flowrun needs to build and test on Debian 12, if missing:
# python3 for a raw test server, clang and its runtime libraries (libFuzzer,
# the sanitizers) for the fuzz targets tests/run.sh runs; graphviz, man-db
# and zsh so that the graph's dot, the man page and the zsh completion are
# checked by the tools that read them; chromium (headless) for the HTML
# report test (tests/e2e/trace_html.sh); tmux for the live progress test;
# libpq-dev for the PostgreSQL connection (engine/store/pgconn.c), and
# postgresql, whose initdb and pg_ctl the tests start a server of their own
# with (tests/unit/support/pg.sh).
set -euo pipefail
pkgs=(build-essential cmake pkg-config liblua5.4-dev libjansson-dev libuv1-dev
      libcurl4-openssl-dev libsqlite3-dev libcmocka-dev curl jq sqlite3 python3 clang libclang-rt-dev
      graphviz man-db zsh chromium tmux libpq-dev postgresql)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The MCP servers and the conformance suite the MCP client is tested against
# (tests/unit/test_mcp.c, tests/e2e/mcp_conformance.sh), at the exact versions
# of tests/mcp/package-lock.json, into tests/mcp/node_modules: never
# fetched at test time. Node 20 or later (Debian 12's own nodejs is 18: use
# NodeSource's package there).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: nodejs npm"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends nodejs npm
fi
mcp_dir="$(cd "$(dirname "$0")" && pwd)/mcp"
if ! cmp -s "$mcp_dir/package-lock.json" "$mcp_dir/node_modules/.flowrun-lock" 2>/dev/null; then
  echo "installing the MCP test servers into $mcp_dir/node_modules"
  npm ci --prefix "$mcp_dir" --no-audit --no-fund --loglevel=error
  cp "$mcp_dir/package-lock.json" "$mcp_dir/node_modules/.flowrun-lock"
fi
