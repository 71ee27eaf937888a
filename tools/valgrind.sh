#!/usr/bin/env bash
# valgrind.sh -- valgrind memcheck over a representative part of the suite.
#
#   tools/valgrind.sh            build build-valgrind, run, report
#
# What runs under memcheck (a plain Debug build: valgrind and ASan do not
# mix): the C tests of the loop, timers, sockets and worker-thread jobs;
# the Lua specs of the socket module and its buffers (bytearray,
# recv_into), the task runtime, threading, errors,
# moonsock.fs and the hostile
# runtime spec (each inside the real moonsock binary); and black-box
# server runs over loopback -- scripts/echo.lua with a hundred clients
# that echo, half-close and reset, and tests/hostile/admin.lua driven
# through its error paths (error({}), an error in __gc, a stuck handler
# stopped by the CPU budget, a handler that hits --max-memory) and then
# stopped with SIGTERM. Every process is checked for memcheck errors and
# for definitely or indirectly lost blocks; "still reachable" blocks
# (libc and libcrypto caches) are not counted. Exit status 0 only if
# every run is clean. Takes a few minutes; not part of ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build-valgrind
cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$out" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
logs=$out/vg-logs
rm -rf "$logs"
mkdir -p "$logs"

# The CPU budget counts CPU time, which valgrind multiplies by ~30: give
# the tasks room unless a run asks for a budget itself.
vg=(valgrind --tool=memcheck --leak-check=full --track-fds=no
    --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99
    --num-callers=30 --log-file="$PWD/$logs/vg.%p.log")

wrapper=$out/moonsock-vg
cat > "$wrapper" <<EOF
#!/usr/bin/env bash
exec ${vg[*]} $PWD/$out/moonsock --cpu-budget 60 "\$@"
EOF
chmod +x "$wrapper"

status=0
run() {  # run LABEL COMMAND...
  echo "=== $1"
  shift
  if ! "$@" > "$logs/last.out" 2>&1; then
    tail -20 "$logs/last.out"
    echo "FAILED (exit status)"
    status=1
  fi
}

for t in loop timer sock offload; do
  run "c.$t" "${vg[@]}" "$out/tests/${t}_test"
done
for spec in tests/lua/socket_spec.lua tests/lua/bytearray_spec.lua tests/lua/task_spec.lua \
            tests/lua/threading_spec.lua tests/lua/errors_spec.lua \
            tests/lua/fs_spec.lua \
            tests/hostile/runtime_spec.lua; do
  run "$spec" "$wrapper" tests/run_busted.lua -o utfTerminal "$spec"
done

run "echo server, 100 clients" env MOONSOCK="$PWD/$wrapper" python3 - <<'EOF'
import os, socket, struct, sys
sys.path.insert(0, "tests/blackbox")
from util import start_server, stop
proc, port = start_server("scripts/echo.lua", timeout=120)
bad = 0
for i in range(100):
    s = socket.create_connection(("127.0.0.1", port), 60)
    data = os.urandom(1000 + i * 37)
    s.sendall(data)
    if i % 3 == 0:                          # half-close, read it all
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    else:
        got = b""
        while len(got) < len(data):
            got += s.recv(65536)
    bad += got != data
    if i % 5 == 0:                          # reset instead of close
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
    s.close()
rc = stop(proc, timeout=120)
print("bad echoes:", bad, "exit:", rc)
sys.exit(1 if bad or rc != 0 else 0)
EOF

run "admin server, error paths" env MOONSOCK="$PWD/$wrapper" python3 - <<'EOF'
import socket, sys
sys.path.insert(0, "tests/hostile")
from hostile import start_admin, stop, ask, connect
# The wrapper's --cpu-budget 60 comes first; these override it.
proc, port = start_admin("--max-memory", "24", "--cpu-budget", "3",
                         timeout=120)
for cmd in ("ERRTABLE", "ERRNIL", "ERRTOSTRING", "GCERR", "SPIN", "HOG",
            "PING"):
    try:
        print(cmd, ask(port, cmd, timeout=120))
    except OSError as e:
        print(cmd, e)
ok = ask(port, "PING", timeout=60) == "PONG"
rc = stop(proc, timeout=120)
print("exit:", rc)
sys.exit(0 if ok and rc == 0 else 1)
EOF

echo "=== memcheck reports"
for f in "$logs"/vg.*.log; do
  bad="ERROR SUMMARY: [1-9]|definitely lost: [1-9]|indirectly lost: [1-9]"
  if grep -qE "$bad" "$f"; then
    echo "memcheck found problems: $f"
    grep -E "ERROR SUMMARY|definitely lost|indirectly lost" "$f"
    status=1
  fi
done
n=$(ls "$logs"/vg.*.log | wc -l)
echo "$n processes checked"
if [ $status -eq 0 ]; then
  echo "valgrind: clean (no errors, no leaks)"
else
  echo "valgrind: FAILED" >&2
fi
exit $status
