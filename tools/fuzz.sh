#!/usr/bin/env bash
# fuzz.sh -- run each libFuzzer target for a while (default 60 s each).
#
#   tools/fuzz.sh [SECONDS]
#
# Needs clang and libclang-rt-14-dev (Debian). New inputs that widen
# coverage are added to tests/fuzz/corpus/<target>/ (commit them); a crash
# leaves crash-* in the current directory: copy it into the corpus, fix
# the bug, and the replay tests in ctest keep it fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
out=build-fuzz
mkdir -p "$out"
core=(core/error.c core/addr.c core/buf.c)
for t in addr buf; do
  clang -g -O1 -std=c99 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
    -Icore/include "${core[@]}" "tests/fuzz/fuzz_$t.c" -o "$out/fuzz_$t"
  echo "=== fuzz_$t for ${secs}s ==="
  "$out/fuzz_$t" -max_total_time="$secs" -max_len=512 \
    "tests/fuzz/corpus/$t"
done
