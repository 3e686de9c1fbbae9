#!/usr/bin/env bash
# Installs what flowrun needs to build and test on Debian 12, if missing:
# python3 for a raw test server, clang and its runtime libraries (libFuzzer,
# the sanitizers) for the fuzz targets tests/run.sh runs.
set -euo pipefail
pkgs=(build-essential cmake pkg-config liblua5.4-dev libjansson-dev libuv1-dev
      libcurl4-openssl-dev libsqlite3-dev libcmocka-dev curl jq sqlite3 python3 clang libclang-rt-dev)
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
