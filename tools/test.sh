#!/usr/bin/env bash
# test.sh -- build moonsock twice (normal, and ASan+UBSan) and run the
# whole test suite on both loop backends (epoll, poll): four ctest runs.
#
#   tools/test.sh            everything
#   tools/test.sh -L lua     pass ctest options through (label, -R, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

build() {  # build DIR [cmake options...]
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j "$jobs" >/dev/null
}

build build
build build-asan -DMSK_SANITIZE=ON

# LeakSanitizer needs ptrace-free access; detect_leaks stays on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
for dir in build build-asan; do
  for backend in epoll poll; do
    echo "=== ctest: $dir, MSK_BACKEND=$backend ==="
    MSK_BACKEND=$backend ctest --test-dir "$dir" --output-on-failure \
      -j "$jobs" "$@" || status=1
  done
done
if [ $status -eq 0 ]; then
  echo "all test runs passed (2 builds x 2 backends)"
else
  echo "some test runs FAILED" >&2
fi
exit $status
