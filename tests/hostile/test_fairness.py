#!/usr/bin/env python3
"""test_fairness.py -- one client pushing 100 MB does not starve 50 others.

Issue 8, fairness: a task may move at most 256 KiB through recv/send per
run (bindings/socket.c, RUN_QUOTA); past it recv says EAGAIN without a
syscall, the task waits one loop pass, and level-triggered readiness
brings it back after the others ran. Checked: while one client streams
100 MB as fast as it can into a SINK handler, 50 clients doing echo
round trips keep their latency (bounded maximum and median), and the
streaming client is never stopped by the CPU budget: it gets all of its
bytes counted. The flooding handler does Lua work on every chunk, so the
client always has data waiting: without the quota its task would never
wait, and the others would wait for the whole flood.
"""

import socket
import threading
import time

from hostile import Checks, start_admin, stop, connect, readline, SLOW

checks = Checks()
TOTAL = 100 * 1024 * 1024
N = 50

proc, port = start_admin()
try:
    stop_flag = threading.Event()
    rtts = [[] for _ in range(N)]
    errors = []

    def echo_client(i, s):
        try:
            msg = (b"%04d" % i) * 4
            while not stop_flag.is_set():
                t0 = time.monotonic()
                s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    d = s.recv(len(msg) - len(got))
                    if not d:
                        raise EOFError("closed")
                    got += d
                rtts[i].append(time.monotonic() - t0)
                if got != msg:
                    raise ValueError("wrong echo")
                time.sleep(0.01)
        except Exception as e:  # noqa: reported below
            errors.append("%d: %r" % (i, e))

    socks = []
    for i in range(N):
        s = connect(port)
        s.sendall(b"ECHO\n")
        socks.append(s)
    threads = [threading.Thread(target=echo_client, args=(i, s))
               for i, s in enumerate(socks)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    for r in rtts:
        r.clear()                       # measure only during the flood

    hog = connect(port, timeout=120)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    hog.sendall(b"DIGEST\n")
    chunk = b"h" * (1024 * 1024)
    t0 = time.monotonic()
    for _ in range(TOTAL // len(chunk)):
        hog.sendall(chunk)
    hog.shutdown(socket.SHUT_WR)
    reply = readline(hog)
    flood = time.monotonic() - t0
    hog.close()
    stop_flag.set()
    for t in threads:
        t.join(30)

    checks(reply.startswith("got=%d " % TOTAL),
           "the flooding client gets all 100 MB counted (%r, %.2fs, "
           "%.0f MB/s)" % (reply, flood, TOTAL / flood / 1e6))
    checks(not errors, "no echo client failed %s" % errors[:3])
    allr = sorted(x for r in rtts for x in r)
    checks(len(allr) >= N, "echo round trips happened during the flood "
           "(%d)" % len(allr))
    if allr:
        med = allr[len(allr) // 2]
        p99 = allr[int(len(allr) * 0.99)]
        worst = allr[-1]
        print("     round trips: %d, median %.1f ms, p99 %.1f ms, max %.1f "
              "ms" % (len(allr), med * 1e3, p99 * 1e3, worst * 1e3))
        checks(all(len(r) > 0 for r in rtts),
               "every echo client was served during the flood")
        checks(med < 0.05 * SLOW, "median round trip under %d ms"
               % (50 * SLOW))
        # Starved, a client waits as long as the flood lasts.
        bound = min(1.5 * SLOW, 0.2 * SLOW + flood / 2)
        checks(worst < bound, "worst round trip under %d ms (the flood "
               "took %d ms)" % (bound * 1e3, flood * 1e3))
    checks("CPU budget" not in proc.log(), "no task hit the CPU budget")
    for s in socks:
        s.close()
finally:
    status = stop(proc)
checks(status == 0, "clean exit (%s)" % status)
checks.finish()
