#!/usr/bin/env bash
# upload.sh -- 1 GiB through scripts/upload.lua over loopback, beside
# `cat file | nc` into a file on the same disk, in one run (issue 6).
#
#   bench/upload.sh [MOONSOCK] [SIZE_MIB]     (defaults: build/moonsock, 1024)
#
# Each figure includes everything the tool does: the client hashes the
# file before a put and after a get; the server writes, hashes, fsyncs
# and renames. `nc` only copies (no hash, no fsync), so it is the ceiling
# of the disk and the loopback, not a like-for-like competitor; a second
# nc line adds the sync that the upload server always does.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-build/moonsock}
MIB=${2:-1024}
W=$(mktemp -d "${TMPDIR:-/var/tmp}/msk-upload-bench.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
            rm -rf "$W"; }
trap cleanup EXIT

head -c $((MIB << 20)) /dev/urandom > "$W/src"
sync
rate() { awk -v b=$((MIB << 20)) -v s="$1" 'BEGIN{printf "%.0f MB/s", b/s/1e6}'; }
now() { date +%s.%N; }

"$M" --listen 127.0.0.1:0 scripts/upload.lua --dir "$W/store" \
    --max-size 64G 2> "$W/server.log" &
pids+=($!)
for _ in $(seq 100); do
  port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$W/server.log" | cut -d: -f2) && break
  sleep 0.1
done

t0=$(now); "$M" scripts/upload_client.lua put 127.0.0.1 "$port" "$W/src" big --quiet
t1=$(now); "$M" scripts/upload_client.lua get 127.0.0.1 "$port" big "$W/got" --quiet
t2=$(now)
cmp "$W/src" "$W/got"
put=$(echo "$t1 - $t0" | bc); get=$(echo "$t2 - $t1" | bc)

ncport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nc -l 127.0.0.1 "$ncport" > "$W/nc.out" & ncpid=$!; pids+=($ncpid)
sleep 0.3
t3=$(now); cat "$W/src" | nc -N 127.0.0.1 "$ncport"; wait $ncpid || true
t4=$(now); sync "$W/nc.out"; t5=$(now)
nc=$(echo "$t4 - $t3" | bc); ncs=$(echo "$t5 - $t3" | bc)

echo "upload.lua put $MIB MiB: ${put}s  $(rate "$put")  (client hash + send + server hash, fsync, rename)"
echo "upload.lua get $MIB MiB: ${get}s  $(rate "$get")  (sendfile + client write, hash, rename)"
echo "cat | nc      $MIB MiB: ${nc}s  $(rate "$nc")  (copy only)"
echo "cat | nc+sync $MIB MiB: ${ncs}s  $(rate "$ncs")"
grep -E "ERROR|WARN" "$W/server.log" || true
