#!/usr/bin/env python3
"""Load test of scripts/chat.lua: 200 clients x 100 messages.

Every client joins the lobby, then all send their 100 messages at once
(the server's default rate limit, 10/s with a burst of 20, spreads them
over about 8 s). Each client must receive every message exactly once,
each sender's in order, every line whole and prefixed with the right
name. CHAT_LOAD_CLIENTS and CHAT_LOAD_MESSAGES scale it (defaults 200 and
100), CHAT_LOAD_SERVER_ARGS adds chat options. Prints 'N passed, N failed'; exits non-zero on failure.
"""

import os
import selectors
import socket
import time

from util import ROOT, Checks, start_server, stop

CHAT = os.path.join(ROOT, "scripts", "chat.lua")
CLIENTS = int(os.environ.get("CHAT_LOAD_CLIENTS", "200"))
MESSAGES = int(os.environ.get("CHAT_LOAD_MESSAGES", "100"))
TIMEOUT = float(os.environ.get("CHAT_LOAD_TIMEOUT", "150"))
# Extra chat options, e.g. "--rate 100000 --burst 100000" to measure raw
# fan-out instead of the default rate limit.
SERVER_ARGS = os.environ.get("CHAT_LOAD_SERVER_ARGS", "").split()

check = Checks()


class Peer:
    __slots__ = ("sock", "buf", "got", "next", "bad", "index")

    def __init__(self, index):
        self.index = index
        self.buf = b""
        self.got = 0
        self.next = [0] * CLIENTS   # next message number from each sender
        self.bad = []


def main():
    proc, port = start_server(CHAT, script_args=SERVER_ARGS)
    peers = []
    names = [None] * CLIENTS     # the name each sender's lines carry
    try:
        t0 = time.monotonic()
        for i in range(CLIENTS):
            p = Peer(i)
            p.sock = socket.create_connection(("127.0.0.1", port))
            peers.append(p)
        # All have joined once the last one sees them all in /who.
        last = peers[-1].sock
        last.sendall(b"/who\n")
        data = b""
        deadline = time.monotonic() + 60
        want = ("*** in lobby (%d):" % CLIENTS).encode()
        while want not in data and time.monotonic() < deadline:
            last.settimeout(max(deadline - time.monotonic(), 0.01))
            data += last.recv(65536)
        check(want in data, "%d clients joined in %.1fs"
              % (CLIENTS, time.monotonic() - t0))
        peers[-1].buf = data[data.rfind(b"\n") + 1:]

        sel = selectors.DefaultSelector()
        for p in peers:
            p.sock.setblocking(False)
            sel.register(p.sock, selectors.EVENT_READ, p)
        t1 = time.monotonic()
        for p in peers:
            p.sock.sendall(b"".join(b"m %d %d\n" % (p.index, k)
                                    for k in range(MESSAGES)))
        total = CLIENTS * MESSAGES
        done = 0
        deadline = t1 + TIMEOUT
        while done < CLIENTS and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                p = key.data
                try:
                    chunk = p.sock.recv(262144)
                except BlockingIOError:
                    continue
                if not chunk:
                    p.bad.append("connection closed")
                    sel.unregister(p.sock)
                    done += 1
                    continue
                lines = (p.buf + chunk).split(b"\n")
                p.buf = lines.pop()
                nxt = p.next
                for line in lines:
                    if line.startswith(b"*** "):
                        continue
                    parts = line.split(b" ")
                    try:
                        name, m, i, k = parts
                        i = int(i)
                        k = int(k)
                    except ValueError:
                        p.bad.append(line[:80])
                        continue
                    if m != b"m" or nxt[i] != k:
                        p.bad.append(line[:80])
                        continue
                    if names[i] is None:
                        names[i] = name
                    elif names[i] != name:
                        p.bad.append(line[:80])
                    nxt[i] = k + 1
                    p.got += 1
                    if p.got == total:
                        done += 1
        took = time.monotonic() - t1
        complete = sum(1 for p in peers if p.got == total and not p.bad)
        check(complete == CLIENTS,
              "every client got all %d messages, in order, once, whole "
              "(%d of %d clients complete)" % (total, complete, CLIENTS))
        for p in peers:
            if p.bad or p.got != total:
                print("     client %d: got %d, bad %r"
                      % (p.index, p.got, p.bad[:3]))
                break
        check(len(set(names)) == CLIENTS and None not in names,
              "each sender's lines carry one name, its own")
        print("     %d messages, %d deliveries in %.1fs (%.0f deliveries/s)"
              % (total, total * CLIENTS, took, total * CLIENTS / took))
        # Nobody was dropped or disconnected.
        log = proc.log()
        check(" left" not in log and "ERROR" not in log,
              "nobody left or failed during the run")
        for p in peers:
            p.sock.close()
    finally:
        rc = stop(proc)
        check(rc == 0, "server stops cleanly (rc %s)" % rc)
    check.finish()


if __name__ == "__main__":
    main()
