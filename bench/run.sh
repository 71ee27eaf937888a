#!/usr/bin/env bash
# run.sh -- moonsock against the alternatives, in one run, on this machine.
#
#   bench/run.sh            the full run (several minutes); installs the
#                           alternatives from Debian if they are missing
#   bench/run.sh --quick    smoke run for CI (well under a minute): tiny
#                           sizes, no installs, no figures checked; fails
#                           only if the load generator sees errors against
#                           the raw C server or moonsock
#   bench/run.sh --only moonsock,uvloop    restrict the servers (the raw C
#                           limit always runs first and last)
#   bench/run.sh --rounds 3 run the echo configurations 3 times over, each
#                           round limit-first-and-last; the tables give
#                           the median of the rounds (this VM's speed
#                           wanders by 10-20 % between runs)
#
# The server is pinned to CPU 0 and the load generator to CPU 1. Every
# configuration starts a fresh server, so memory figures start from a
# clean process. The raw C server runs first and last; every figure is
# printed beside its ratio to the mean of those two runs, and the drift
# between them is printed too. Results: bench/out/results.txt (RESULT
# lines, one per measurement) and bench/out/report.md (the tables).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
B=$ROOT/bench/build
MSK_BUILD=$ROOT/build-bench
PY=/usr/bin/python3              # Debian's python, the one uvloop is for
QUICK=0
ONLY=""
ROUNDS=1
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --only) ONLY=$2; shift ;;
    --rounds) ROUNDS=$2; shift
      [[ $ROUNDS =~ ^[1-9][0-9]*$ ]] ||
        { echo "run.sh: --rounds needs a positive integer" >&2; exit 2; } ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '%s\n' "$*" >&2; }

# ---- dependencies --------------------------------------------------------
# The alternatives come from Debian, installed here when missing (a full
# run only: the smoke run uses what is there and skips the rest).
ALT_PKGS=(python3 python3-uvloop lua5.4 lua-cqueues lua-luv tarantool
          netcat-openbsd util-linux procps)
if [ $QUICK -eq 0 ]; then
  missing=()
  for p in "${ALT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
      missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "run.sh: installing ${missing[*]}"
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
      --no-install-recommends "${missing[@]}" >/dev/null ||
      say "run.sh: install failed; servers that need it will be skipped"
  fi
fi

# ---- build ---------------------------------------------------------------
say "run.sh: building moonsock (Release, $MSK_BUILD) and bench/"
cmake -S . -B "$MSK_BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  >/dev/null || exit 1
cmake --build "$MSK_BUILD" -j "$(nproc)" >/dev/null || exit 1
make -s -C bench >/dev/null || exit 1
MSK=$MSK_BUILD/moonsock
LG=$B/loadgen

# 50,000 connections need 50,000 descriptors on each side; root may raise
# the hard limit. The children (servers, loadgen) inherit it.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true

SRV_CPU=0
LG_CPU=1
PIN=1
if [ "$(nproc)" -lt 2 ] || ! command -v taskset >/dev/null; then
  PIN=0
  say "run.sh: fewer than 2 CPUs or no taskset: not pinning"
fi
pin() { if [ $PIN -eq 1 ]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }

mkdir -p "$OUT"
RESULTS=$OUT/results.txt
: > "$RESULTS"
LOGS=$OUT/logs
rm -rf "$LOGS"
mkdir -p "$LOGS"

# ---- servers -------------------------------------------------------------
# Ports start below Linux's ephemeral range (32768-60999), so no client's
# local port and no server bound to port 0 can hold them; take_port skips
# any port something already listens on, so a stray server is never
# measured by mistake.
PORT=$((10000 + RANDOM % 20000))
SRV_PID=""

take_port() {
  PORT=$((PORT + 1))
  while (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; do
    PORT=$((PORT + 1))
  done
}

# server_cmd NAME PORT -> the command line, or nothing if not available.
server_cmd() {
  local s=$ROOT/bench/servers
  case $1 in
    c) echo "$B/c_echo $2" ;;
    c-chat) echo "$B/c_echo $2 chat" ;;
    moonsock) echo "$MSK --log-level warn --grace 0 --max-connections 100000 \
--backlog 1024 --listen 127.0.0.1:$2 $ROOT/scripts/echo.lua" ;;
    moonsock-workers) echo "$MSK --workers $WORKERS --log-level warn \
--grace 0 --max-connections 100000 --backlog 1024 --listen 127.0.0.1:$2 \
$ROOT/scripts/echo.lua" ;;
    moonsock-chat) [ -f "$ROOT/scripts/chat.lua" ] &&
      echo "$MSK --log-level warn --grace 0 --max-connections 100000 \
--backlog 1024 --listen 127.0.0.1:$2 $ROOT/scripts/chat.lua --rate 1000000 \
--burst 1000000 --no-console --greet-delay 0 --max-queue 16777216" ;;
    threading) [ -x $PY ] && echo "$PY $s/py_threading.py $2" ;;
    asyncio) [ -x $PY ] && echo "$PY $s/py_asyncio.py $2" ;;
    uvloop) $PY -c 'import uvloop' 2>/dev/null &&
      echo "$PY $s/py_asyncio.py $2 uvloop" ;;
    cqueues) lua5.4 -e 'require "cqueues"' 2>/dev/null &&
      echo "lua5.4 $s/cqueues_echo.lua $2" ;;
    luv) lua5.4 -e 'require "luv"' 2>/dev/null &&
      echo "lua5.4 $s/luv_echo.lua $2" ;;
    tarantool) command -v tarantool >/dev/null &&
      echo "tarantool $s/tarantool_echo.lua $2" ;;
  esac
}

stop_server() {
  [ -n "$SRV_PID" ] || return 0
  kill "$SRV_PID" 2>/dev/null
  for _ in $(seq 50); do
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$SRV_PID" 2>/dev/null
  wait "$SRV_PID" 2>/dev/null
  SRV_PID=""
}
trap stop_server EXIT

# start_server NAME [CMD]: start on a fresh port (CMD, when given, names
# $PORT after the caller's take_port), wait until it accepts.
start_server() {
  local name=$1 cmd=${2:-}
  if [ -z "$cmd" ]; then
    take_port
    cmd=$(server_cmd "$name" $PORT)
  fi
  [ -n "$cmd" ] || return 1
  # exec: $! must be the server itself, whose /proc/PID/stat we read.
  # shellcheck disable=SC2086
  if [ $PIN -eq 1 ]; then
    exec_cmd="exec taskset -c $SRV_CPU $cmd"
  else
    exec_cmd="exec $cmd"
  fi
  bash -c "$exec_cmd" </dev/null >>"$LOGS/$name.log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then return 0; fi
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.05
  done
  say "run.sh: $name did not start (see $LOGS/$name.log)"
  stop_server
  return 1
}

FAILED=0
# measure SERVER CONFIG LOADGEN-ARGS...: one fresh server, one loadgen run.
measure() {
  local srv=$1 cfg=$2
  shift 2
  if ! start_server "$srv"; then
    echo "SKIP label=$srv/$cfg reason=not-available" >>"$RESULTS"
    return
  fi
  local line
  line=$(pin $LG_CPU "$LG" "$@" --port $PORT --pid "$SRV_PID" \
         --label "$srv/$cfg" 2>>"$LOGS/loadgen.log")
  local rc=$?
  stop_server
  printf '%s\n' "$line" | grep '^RESULT' >>"$RESULTS"
  say "  $(printf '%s\n' "$line" | head -1)"
  if [ $rc -ne 0 ] || ! printf '%s\n' "$line" | grep -q '^RESULT'; then
    case $srv in c|c-chat|moonsock*) FAILED=1 ;; esac
  fi
}

# ---- configurations ------------------------------------------------------
if [ $QUICK -eq 1 ]; then
  T=(--warmup 0.1 --duration 0.3)
  C1000=200; IDLE1=300; IDLE2=1000; STREAM=$((32 << 20))
  CHAT_N=100; XFER=$((16 << 20)); RELOAD_N=100
else
  T=(--warmup 1 --duration 3)
  C1000=1000; IDLE1=10000; IDLE2=50000; STREAM=$((1 << 30))
  CHAT_N=1000; XFER=$(((1 << 30) + (1 << 20))); RELOAD_N=1000  # above 1 GiB
fi

echo_configs() {  # echo_configs SERVER [ROUND]
  local s=$1 round=${2:-1}
  if [ $QUICK -eq 1 ] && [ "$s" != c ] && [ "$s" != moonsock ]; then
    # Smoke: each alternative starts and echoes; the rest is for c and
    # moonsock, which exercise every mode of the load generator.
    measure "$s" e100 echo --conns 100 --size 64 "${T[@]}"
    return
  fi
  measure "$s" e1 echo --conns 1 --size 64 "${T[@]}"
  measure "$s" e100 echo --conns 100 --size 64 "${T[@]}"
  measure "$s" e1000 echo --conns $C1000 --size 64 "${T[@]}" --timeout 60
  measure "$s" e64k echo --conns 10 --size 65536 "${T[@]}"
  measure "$s" pipe pipe --conns 10 --depth 16 --size 64 "${T[@]}"
  [ "$round" -eq 1 ] || return 0     # later rounds: the echo rows only
  measure "$s" stream stream --conns 1 --bytes $STREAM --timeout 60
  measure "$s" idle10k idle --conns $IDLE1 --hold 1 --timeout 60
  if [ "$(ulimit -Hn)" != unlimited ] &&
     [ "$(ulimit -Hn)" -lt $((IDLE2 + 100)) ]; then
    # One process holds every connection on each side: with a lower
    # hard limit (not raisable without CAP_SYS_RESOURCE) it cannot work.
    say "  $s/idle50k: not measurable here: hard RLIMIT_NOFILE is" \
        "$(ulimit -Hn)"
    echo "SKIP label=$s/idle50k reason=RLIMIT_NOFILE-hard-$(ulimit -Hn)" \
      >>"$RESULTS"
    if [ "$s" = moonsock ]; then
      # moonsock --workers K spreads them over K processes, each under
      # the limit; so does the load generator (--procs K).
      local per=$(( $(ulimit -Hn) - 200 ))
      WORKERS=$(( (IDLE2 + per - 1) / per ))
      say "  moonsock-workers/idle50k: $WORKERS workers," \
          "$WORKERS load generator processes"
      measure moonsock-workers idle50k idle --conns $IDLE2 \
        --procs $WORKERS --tree --hold 1 --timeout 120
    fi
    return
  fi
  measure "$s" idle50k idle --conns $IDLE2 --hold 1 --timeout 120
  if [ $QUICK -eq 1 ] && [ "$s" = moonsock ]; then
    # Smoke of the path above: --workers and the split load generator.
    WORKERS=2
    measure moonsock-workers idle50k idle --conns $IDLE2 --procs 2 --tree \
      --hold 0.2 --timeout 60
  fi
}

ALL=(moonsock threading asyncio uvloop cqueues luv tarantool)
SERVERS=()
for s in "${ALL[@]}"; do
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$s,"* ]]; then continue; fi
  if [ -z "$(server_cmd "$s" 1)" ]; then
    say "run.sh: $s: not installed, skipped"
    echo "SKIP label=$s/all reason=not-installed" >>"$RESULTS"
    continue
  fi
  SERVERS+=("$s")
done

say "run.sh: echo family: c (first), ${SERVERS[*]}, c (last);" \
    "$ROUNDS round(s)"
echo "ROUNDS n=$ROUNDS" >>"$RESULTS"
for round in $(seq "$ROUNDS"); do
  say "== round $round: c (first)"
  echo_configs c "$round"
  for s in "${SERVERS[@]}"; do
    say "== round $round: $s"
    echo_configs "$s" "$round"
  done
  say "== round $round: c (last)"
  echo_configs c "$round"
done

# Chat fan-out: the raw C chat limit, scripts/chat.lua, the limit again.
say "== chat fan-out: $CHAT_N members, 10 senders"
chat_cfg() {
  measure "$1" chat chat --conns $CHAT_N --senders 10 --size 64 "${T[@]}" \
    --timeout 60
}
chat_cfg c-chat
if [ -n "$(server_cmd moonsock-chat 1)" ]; then
  chat_cfg moonsock-chat
else
  say "  moonsock chat: not available yet (no scripts/chat.lua)"
  echo "SKIP label=moonsock-chat/chat reason=not-available-yet" >>"$RESULTS"
fi
chat_cfg c-chat

# Upload and download: scripts/upload.lua against nc, same file, same disk.
say "== upload/download: $XFER bytes"
XD=$OUT/xfer
rm -rf "$XD"
mkdir -p "$XD/store"
"$LG" genfile --bytes $XFER --file "$XD/src.bin"
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }
nc_result() {  # nc_result LABEL SECONDS
  awk -v l="$1" -v s="$2" -v b=$XFER 'BEGIN {
    printf "RESULT label=%s mode=nc secs=%.3f mbps=%.2f errors=0\n",
           l, s, b / s / 1e6 }' | tee -a "$RESULTS" >&2
}
if command -v nc >/dev/null; then
  # Upload: the listener writes to a file on the same disk as the store.
  rm -f "$XD/nc.out"
  take_port
  pin $SRV_CPU nc -l 127.0.0.1 $PORT >"$XD/nc.out" &
  ncl=$!
  sleep 0.2
  t0=$(now)
  pin $LG_CPU nc -N 127.0.0.1 $PORT <"$XD/src.bin"
  wait $ncl
  t1=$(now)
  sync "$XD/nc.out"
  t2=$(now)
  nc_result nc/upload "$(elapsed "$t0" "$t1")"
  nc_result nc+fsync/upload "$(elapsed "$t0" "$t2")"
  # Download: the listener sends the file; the client discards it, as
  # loadgen get does after checking every byte.
  take_port
  pin $SRV_CPU nc -l -N 127.0.0.1 $PORT <"$XD/src.bin" &
  ncl=$!
  sleep 0.2
  t0=$(now)
  pin $LG_CPU nc -d 127.0.0.1 $PORT >/dev/null
  t1=$(now)
  wait $ncl 2>/dev/null
  nc_result nc/download "$(elapsed "$t0" "$t1")"
  rm -f "$XD/nc.out"
else
  say "  nc not installed: no baseline"
fi
if [ -f "$ROOT/scripts/upload.lua" ] && [ -f "$ROOT/docs/upload.md" ]; then
  UPCMD="$MSK --log-level warn --grace 0 --listen 127.0.0.1:@PORT@ \
$ROOT/scripts/upload.lua --dir $XD/store --max-size 64G --reserve 1M"
  xfer() {
    take_port
    local cmd=${UPCMD//@PORT@/$PORT}
    start_server moonsock-upload "$cmd" || { FAILED=1; return; }
    line=$(pin $LG_CPU "$LG" "$1" --port $PORT --pid "$SRV_PID" \
           --bytes $XFER --label "moonsock/$1" 2>>"$LOGS/loadgen.log")
    rc=$?
    stop_server
    printf '%s\n' "$line" | grep '^RESULT' >>"$RESULTS"
    say "  $(printf '%s\n' "$line" | head -1)"
    [ $rc -eq 0 ] || FAILED=1
  }
  xfer put
  xfer get
else
  say "  moonsock upload: not available yet (no scripts/upload.lua)"
  echo "SKIP label=moonsock/upload reason=not-available-yet" >>"$RESULTS"
fi
rm -rf "$XD"

# Reload latency under load: save a new version of the handler while
# RELOAD_N clients echo; three times.
say "== reload under load: $RELOAD_N clients"
RD=$OUT/reload
rm -rf "$RD"
mkdir -p "$RD"
for i in 1 2 3; do
  cp bench/servers/reload_echo.lua "$RD/handler.lua"
  sed 's/^local UPPER = false/local UPPER = true/' \
    bench/servers/reload_echo.lua >"$RD/handler.new.lua"
  take_port
  if ! start_server moonsock-reload "$MSK --log-level info --grace 0 \
--listen 127.0.0.1:$PORT $RD/handler.lua"; then
    FAILED=1
    break
  fi
  sleep 0.2
  line=$(pin $LG_CPU "$LG" reload --conns $RELOAD_N --port $PORT \
         --pid "$SRV_PID" --script "$RD/handler.lua" \
         --newscript "$RD/handler.new.lua" --warmup 1 --duration 5 \
         --timeout 60 --label "moonsock/reload$i" 2>>"$LOGS/loadgen.log")
  stop_server
  printf '%s\n' "$line" | grep '^RESULT' >>"$RESULTS"
  ms=$(printf '%s\n' "$line" | sed -n 's/.*reload_ms=\([-0-9.]*\).*/\1/p')
  if [ "$ms" = "-1.00" ] || [ -z "$ms" ]; then
    say "  reload $i: no new code within 5 s (hot reload not available yet?)"
  else
    say "  reload $i: ${ms} ms from save to new code answering"
  fi
done
rm -rf "$RD"

# ---- report --------------------------------------------------------------
$PY bench/report.py "$RESULTS" >"$OUT/report.md" ||
  python3 bench/report.py "$RESULTS" >"$OUT/report.md"
cat "$OUT/report.md"
say ""
say "run.sh: results in $RESULTS, tables in $OUT/report.md"
if [ $FAILED -ne 0 ]; then
  say "run.sh: errors against the raw C server or moonsock (see above)"
  exit 1
fi
exit 0
