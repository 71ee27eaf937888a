#!/usr/bin/env python3
"""test_signals.py -- signals at 1 kHz during transfers.

Issue 8: while four clients each push 32 MiB through ECHO handlers and
read it back, SIGUSR1 arrives about every millisecond (the admin script
watches it with task.onsignal and counts). Every transfer must come back
byte for byte (no short read or write taken for the end), nothing may be
logged as an error, and the signals must actually have been handled.
Run under both backends (signalfd with epoll, the self-pipe with poll,
where system calls do get interrupted).
"""

import os
import signal
import socket
import threading
import time

from hostile import Checks, start_admin, stop, connect, stats, SLOW

checks = Checks()
SIZE = 32 * 1024 * 1024

proc, port = start_admin()
try:
    done = threading.Event()
    sent = [0]

    def storm():
        while not done.is_set():
            os.kill(proc.pid, signal.SIGUSR1)    # our own child, by PID
            sent[0] += 1
            time.sleep(0.001)

    results = {}

    def transfer(i):
        s = connect(port, timeout=60)
        s.sendall(b"ECHO\n")
        data = os.urandom(SIZE // 16) * 16

        def writer():
            view = memoryview(data)
            for off in range(0, SIZE, 65536):
                s.sendall(view[off:off + 65536])
            s.shutdown(socket.SHUT_WR)
        w = threading.Thread(target=writer)
        w.start()
        got = []
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            got.append(d)
        w.join()
        s.close()
        results[i] = b"".join(got) == data

    t = threading.Thread(target=storm)
    t.start()
    t0 = time.monotonic()
    workers = [threading.Thread(target=transfer, args=(i,))
               for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    took = time.monotonic() - t0
    time.sleep(0.2)                              # a few more signals
    done.set()
    t.join()
    st = stats(port)
    print("     %d signals sent in %.1fs, %d handled (they coalesce)"
          % (sent[0], took, st["signals"]))
    checks(len(results) == 4 and all(results.values()),
           "four 32 MiB echoes came back intact under the storm")
    checks(st["signals"] > 0, "the signals were handled")
    log = proc.log()
    checks("ERROR" not in log, "no error logged")
    checks(proc.poll() is None, "the server is alive")
finally:
    status = stop(proc)
checks(status == 0, "clean exit (%s)" % status)
checks.finish()
