#!/usr/bin/env bash
# soak.sh -- the soak test: mixed chat, command and upload traffic with
# hot reloads every few seconds, memory and descriptors sampled.
#
#   tools/soak.sh [MINUTES]          default 30; a smoke run: 3
#
# Builds build/ (RelWithDebInfo) unless $MOONSOCK names a binary, then
# runs tools/soak.py, which prints a sample line every 10 s and a PASS or
# FAIL verdict (see its header for the criteria). Not part of ctest: it
# takes half an hour. Record notable runs in docs/hardening.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MOONSOCK:-}" ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
  export MOONSOCK=$PWD/build/moonsock
fi
exec python3 tools/soak.py "${1:-30}"
