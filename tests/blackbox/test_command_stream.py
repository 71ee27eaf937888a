#!/usr/bin/env python3
"""Streaming through scripts/command.lua: 100 MiB of random bytes arrive
byte-exact (cat of a file in the root, checked by SHA-256), every byte
value passes (printf with octal escapes), and while one command streams
flat out, a second client on the same server keeps its latency: pings
(P frames) and short `echo` commands, compared with an idle baseline.
Prints the figures and 'N passed, N failed'.
"""

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cmdlib import (CLIENT, MOONSOCK, Server, check, collect,  # noqa
                    connect, counts,
                    finish, frame, make_key, read_key, request, run, send)

SIZE = 100 * 1024 * 1024


def latencies(port, key, n, stop=None):
    """n pings and n/4 echo commands -> (ping ms list, echo ms list)."""
    s = connect(port, key)
    pings, echoes = [], []
    for i in range(n):
        if stop is not None and stop.is_set():
            break
        t0 = time.perf_counter()
        send(s, b"P", 1000 + i, b"ping")
        t, cid, p = frame(s)
        assert t == b"P" and cid == 1000 + i and p == b"ping"
        pings.append((time.perf_counter() - t0) * 1000)
        if i % 4 == 0:
            t0 = time.perf_counter()
            request(s, 2000 + i, ["echo", "hi"])
            r = collect(s, 2000 + i)
            assert r[0] == "X" and r[3] == b"hi\n", r
            echoes.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.005)
    s.close()
    return pings, echoes


def main():
    tmp = tempfile.mkdtemp(prefix="msk-cmds-")
    keyfile = make_key(tmp)
    key = read_key(keyfile)
    root = os.path.join(tmp, "root")
    os.mkdir(root)
    digest = hashlib.sha256()
    with open(os.path.join(root, "big.bin"), "wb") as f:
        left = SIZE
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    want = digest.hexdigest()
    srv = Server("--key-file", keyfile, "--root", root, "--allow",
                 "cat,printf,echo", "--command-timeout", "120",
                 "--output-cap", str(16 * SIZE))
    try:
        if not check(srv.port, "server started"):
            print(srv.log())
            return

        fmt = "".join("\\%03o" % i for i in range(256))
        kind, code, _, out, _ = run(srv.port, key, ["printf", fmt])
        check(kind == "X" and code == 0 and out == bytes(range(256)),
              "all 256 byte values arrive exactly")

        base_p, base_e = latencies(srv.port, key, 100)

        # 100 MiB, byte-exact.
        s = connect(srv.port, key, timeout=120)
        t0 = time.perf_counter()
        request(s, 1, ["cat", "big.bin"])
        h, n, nframes = hashlib.sha256(), 0, 0
        while True:
            t, i, p = frame(s)
            if t == b"O":
                h.update(p)
                n += len(p)
                nframes += 1
            elif t in (b"X", b"F"):
                break
        secs = time.perf_counter() - t0
        s.close()
        check(t == b"X" and p == b"\0\0\0\0\0",
              "stream exit status 0, no flags")
        check(n == SIZE and h.hexdigest() == want,
              "100 MiB arrive byte-exact (sha256 %s...)" % want[:16])
        print("     figures: 100 MiB in %.2f s (%.0f MiB/s, %d frames)"
              % (secs, SIZE / (1 << 20) / max(secs, 1e-9), nframes))

        # Flat out: the command writes as fast as the client reads, and
        # the client (the Lua one, its own process, into /dev/null) reads
        # as fast as it can: 8 x 100 MiB. Meanwhile a second client
        # measures its latency until the stream ends.
        t0 = time.perf_counter()
        streamer = subprocess.Popen(
            [MOONSOCK, CLIENT, "127.0.0.1", str(srv.port), "--key-file",
             keyfile, "--", "cat"] + ["big.bin"] * 8,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stop = threading.Event()

        def waiter():
            streamer.wait()
            stop.set()
        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.05)
        busy_p, busy_e = latencies(srv.port, key, 100000, stop)
        th.join(120)
        secs = time.perf_counter() - t0
        check(streamer.returncode == 0, "800 MiB streamed (exit %s)"
              % streamer.returncode)
        print("     figures: 800 MiB in %.2f s (%.0f MiB/s) while measuring"
              % (secs, 800 / secs))

        def stats(xs):
            xs = sorted(xs)
            return (statistics.median(xs), xs[int(len(xs) * 0.95) - 1],
                    xs[-1])
        bp, be = stats(base_p), stats(base_e)
        sp, se = stats(busy_p), stats(busy_e)
        print("     figures: ping ms idle p50 %.2f p95 %.2f max %.2f; "
              "while streaming p50 %.2f p95 %.2f max %.2f (n=%d)"
              % (bp + sp + (len(busy_p),)))
        print("     figures: echo ms idle p50 %.2f p95 %.2f max %.2f; "
              "while streaming p50 %.2f p95 %.2f max %.2f (n=%d)"
              % (be + se + (len(busy_e),)))
        check(len(busy_p) >= 20, "measured during the stream")
        # Bounds, not exact values: the loop must never stall for long.
        check(sp[0] < max(10 * bp[0], 20) and sp[1] < 100,
              "ping latency holds while streaming")
        check(se[0] < max(10 * be[0], 50) and se[2] < 1000,
              "echo command latency holds while streaming")
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if counts["failed"]:
            print(srv.log()[-3000:])


if __name__ == "__main__":
    main()
    finish()
