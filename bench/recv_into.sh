#!/usr/bin/env bash
# recv_into.sh -- scripts/echo.lua (recv: a Lua string per read) beside
# bench/servers/moonsock_echo_into.lua (recv_into a bytearray, sendall a
# memoryview: no string, no copy) and the raw C echo server, alternated
# ROUNDS times in one run: 1 GiB stream, 10 x 64 KiB echo, 100 x 64 B
# echo. Server pinned to CPU 0, loadgen to CPU 1. Prints each run's
# figures and, per round, each moonsock figure as a ratio to the raw C
# server of that round.
#
#   bench/recv_into.sh [ROUNDS] [SECONDS]        (defaults: 3, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-3}
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  >/dev/null
cmake --build build-bench -j "$(nproc)" >/dev/null
make -s -C bench >/dev/null
M=build-bench/moonsock
LG=bench/build/loadgen
PORT=$((20000 + RANDOM % 10000))
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true' EXIT

# run NAME CMD... -- LOADGEN-ARGS: one fresh server, one loadgen run;
# prints "NAME rate mbps cpu_per_msg_us".
run() {
  local name=$1; shift
  local cmd=()
  while [ "$1" != -- ]; do cmd+=("$1"); shift; done
  shift
  PORT=$((PORT + 1))
  taskset -c 0 "${cmd[@]/@PORT@/$PORT}" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
    sleep 0.05
  done
  taskset -c 1 $LG "$@" --port $PORT --pid $pid 2>/dev/null |
    awk -v n="$name" '/^RESULT/ { for (i = 1; i <= NF; i++) {
        split($i, kv, "="); f[kv[1]] = kv[2] }
      printf "%s %s %s %s\n", n, f["rate"], f["mbps"], f["cpu_per_msg_us"] }'
  kill $pid; wait $pid 2>/dev/null || true
  pid=""
}

echo "recv_into.sh: $ROUNDS rounds; each line: server, msg/s, MB/s," \
     "server CPU us/msg; ratios to raw C in the same round"
for round in $(seq "$ROUNDS"); do
  for cfg in "stream --conns 1 --bytes 1073741824 --timeout 60" \
             "echo --conns 10 --size 65536 --duration $SECS" \
             "echo --conns 100 --size 64 --duration $SECS"; do
    # shellcheck disable=SC2086
    {
      run c bench/build/c_echo @PORT@ -- $cfg
      run recv $M --log-level warn --grace 0 --listen 127.0.0.1:@PORT@ \
        scripts/echo.lua -- $cfg
      run recv_into $M --log-level warn --grace 0 \
        --listen 127.0.0.1:@PORT@ bench/servers/moonsock_echo_into.lua \
        -- $cfg
    } | awk -v r="$round" -v cfg="${cfg%% --timeout*}" '
      { name[NR] = $1; rate[NR] = $2; mb[NR] = $3; cpu[NR] = $4 }
      END {
        printf "round %d, %s\n", r, cfg
        for (i = 1; i <= NR; i++) {
          printf "  %-9s %9s msg/s %9s MB/s %7s us/msg", name[i], rate[i],
                 mb[i], cpu[i]
          if (i > 1 && mb[1] > 0)
            printf "   MB/s %.2fx, CPU/msg %s", mb[i] / mb[1],
                   (cpu[1] > 0 ? sprintf("%.2fx", cpu[i] / cpu[1]) : "-")
          printf "\n"
        }
      }'
  done
done
